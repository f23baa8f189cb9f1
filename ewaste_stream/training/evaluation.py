"""Evaluation: photo and belt-crop accuracy side by side, on all images and leak-free.

A *predictor* is any callable ``list of RGB uint8 crops -> probs [B, C]``: a shipped model's
``Classifier.predict`` (ONNX Runtime, what production runs) or :func:`torch_predictor` during
training. Leaks are eval images with an exact or dHash-near copy in the training folder
(:mod:`.leaks`); every belt crop inherits the leak status of the photo it was rendered from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from loguru import logger

from .calibration import softmax
from .data import Split, scan_split
from .datasets import EvalSet, predict_probs
from .leaks import Leak, find_leaks
from .metrics import classification_report, summary

Predictor = Callable[[list], np.ndarray]
VIEWS = {"single": False, "tta_rot90": True}


def torch_logits(model, info, crops: Sequence[np.ndarray], device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Raw logits [N, C] of a torch model on RGB uint8 crops (preprocessed as in production)."""
    import torch

    from ..model import preprocess

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch_size):
            x = torch.from_numpy(preprocess(list(crops[i:i + batch_size]), info)).to(device)
            with torch.autocast("cuda", dtype=torch.float16, enabled=device.startswith("cuda")):
                out.append(model(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(info.class_names)), np.float32)


def torch_predictor(model, info, device: str = "cpu", temperature: float = 1.0) -> Predictor:
    return lambda crops: softmax(torch_logits(model, info, crops, device), temperature)


def leak_check(eval_split: Split, train_dir: str | Path | None) -> tuple[set[str], list[Leak]]:
    """Eval image paths with a copy in ``train_dir`` (none when no train folder is given)."""
    if train_dir is None:
        return set(), []
    train = scan_split(train_dir, eval_split.class_names)
    leaks = find_leaks([s.path for s in eval_split.samples], [s.path for s in train.samples])
    logger.info("leak check: {} of {} eval images have an exact or near copy in {} ({} byte-identical)",
                len(leaks), len(eval_split), train_dir, sum(lk.exact for lk in leaks))
    return {str(lk.eval_path) for lk in leaks}, leaks


def report_pair(probs: np.ndarray, evset: EvalSet, class_names: Sequence[str], leaked: set[str]) -> dict:
    """Full reports on all crops and with crops of leaked images removed."""
    keep = evset.mask_without(leaked)
    ids = np.asarray(evset.ids, dtype=object)
    return {
        "all": classification_report(evset.labels, probs, class_names, list(ids)),
        "leak_free": classification_report(evset.labels[keep], probs[keep], class_names, list(ids[keep])),
    }


def evaluate_sets(predict: Predictor, sets: Sequence[EvalSet], class_names: Sequence[str], leaked: set[str],
                  views: Sequence[str] = ("single",), batch_size: int = 64) -> dict:
    """``{set: {view: {"all": report, "leak_free": report}}}`` for every set and view mode."""
    out: dict = {}
    for evset in sets:
        for view in views:
            probs = predict_probs(predict, evset.crops, batch_size=batch_size, tta=VIEWS[view])
            out.setdefault(evset.name, {})[view] = report_pair(probs, evset, class_names, leaked)
            s = out[evset.name][view]
            logger.info("{} {}: acc {:.4f} (leak-free {:.4f}, n={}) macro-F1 {:.4f} ECE {:.4f}", evset.name, view,
                        s["all"]["accuracy"], s["leak_free"].get("accuracy", float("nan")),
                        s["leak_free"]["n"], s["leak_free"].get("macro", {}).get("f1", float("nan")),
                        s["leak_free"].get("ece", float("nan")))
    return out


def headline(results: dict) -> dict:
    """Summaries only (for model.json, logs, tables): ``{set: {view: {all, leak_free}}}``."""
    return {name: {view: {k: summary(r) for k, r in pair.items()} for view, pair in views.items()}
            for name, views in results.items()}


def write_outputs(out_dir: str | Path, results: dict, class_names: Sequence[str], leaks: Sequence[Leak],
                  summary_: dict, stem: str = "eval") -> Path:
    """``<stem>.json`` (summary + full reports + leaks), ``<stem>.md`` (side-by-side table),
    ``confusion_<set>.png`` (leak-free, single view) and ``misclassified.csv`` in ``out_dir``."""
    import csv
    import json

    from .plots import confusion_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"summary": summary_, "reports": results, "leaks": [lk.to_dict() for lk in leaks]}
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    (out / f"{stem}.md").write_text(markdown_table(results) + "\n", encoding="utf-8")
    with open(out / "misclassified.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["set", "view", "item", "label", "pred", "confidence"])
        for name, views in results.items():
            for view, pair in views.items():
                for m in pair["all"].get("misclassified", []):
                    w.writerow([name, view, m["path"], m["label"], m["pred"], m["confidence"]])
    for name, views in results.items():
        first = next(iter(views.values()))["leak_free"]
        if first.get("n"):
            confusion_png(first["confusion"], class_names, out / f"confusion_{name}.png", title=f"{name} (leak-free)")
    return out


def markdown_table(results: dict) -> str:
    """Photo vs belt-crop figures side by side (single view and TTA, all and leak-free)."""
    lines = ["| set | views | images | accuracy | leak-free accuracy | leak-free macro-F1 | leak-free ECE |",
             "|---|---|---|---|---|---|---|"]
    for name, views in results.items():
        for view, pair in views.items():
            a, lf = pair["all"], pair["leak_free"]
            if not a.get("n"):
                continue
            lines.append(f"| {name} | {view} | {a['n']} | {a['accuracy']:.4f} | {lf.get('accuracy', float('nan')):.4f} "
                         f"(n={lf['n']}) | {lf['macro']['f1']:.4f} | {lf['ece']:.4f} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class EvalOptions:
    data: str
    model: str
    train_dir: str | None = None
    belt_per_photo: int = 0  # 0: photos only
    belt_seed: int = 20261127
    tta: bool = False
    videos: tuple[str, ...] = ()
    limit: int | None = None
    backend: str = "auto"
    threads: int = 2
    precision: str = "auto"  # ONNX: int8 | fp32 graph (auto: int8 on the CPU when the folder has one)


def evaluate_model(opts: EvalOptions) -> dict:
    """Evaluate a model folder as production runs it (``load_classifier``). Returns
    ``{"summary", "reports", "leaks", "class_names"}``."""
    from ..model import load_classifier
    from .datasets import belt_set, photo_set

    clf = load_classifier(opts.model, backend=opts.backend, threads=opts.threads, precision=opts.precision)
    split = scan_split(opts.data, clf.class_names)
    leaked, leaks = leak_check(split, opts.train_dir)
    sets = [photo_set(split, opts.limit)]
    if opts.belt_per_photo:
        sets.append(belt_set(split, opts.belt_per_photo, opts.belt_seed, opts.limit))
    for i, prefix in enumerate(opts.videos):
        from .video_crops import video_set

        vs = video_set(prefix, clf.class_names)
        if any(s.name == vs.name for s in sets):  # two videos with the same file name: keep both
            vs = replace(vs, name=f"{vs.name}_{i + 1}")
        sets.append(vs)
    views = ("single", "tta_rot90") if opts.tta else ("single",)
    results = evaluate_sets(clf.predict, sets, clf.class_names, leaked, views=views)
    summary_ = {"model": opts.model, "model_name": clf.name, "data": opts.data, "train_dir": opts.train_dir,
                "leaked": len(leaks), "belt_per_photo": opts.belt_per_photo, "belt_seed": opts.belt_seed,
                "metrics": headline(results)}
    return {"summary": summary_, "reports": results, "leaks": leaks, "class_names": clf.class_names}
