"""``ewaste-stream analyse``: a model on a labelled image folder -> an HTML report.

Steps: predict every image (penultimate features + logits in one pass, probabilities
calibrated by the model's temperature) -> evaluate's metrics -> uncertainty and reject
thresholds -> embedding maps -> Grad-CAM on a sample per class and on the errors -> report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from loguru import logger

from . import uncertainty

ImageFn = Callable[[int], np.ndarray]  # index -> RGB uint8 crop the model sees


@dataclass(frozen=True, slots=True)
class AnalyseOptions:
    per_class: int = 3  # Grad-CAM sample per class (plus every error, up to max_errors)
    max_errors: int = 60
    target_layer: str | None = None
    target_accuracy: float = 0.98  # accepted-accuracy the recommended thresholds must reach
    batch_size: int = 16
    seed: int = 0
    embed: bool = True
    belt_crops: bool = False  # render each photo as a belt crop (sim) before classifying
    vote_thresholds: tuple[float, float] | None = None  # configured (min_confidence, min_margin) to evaluate
    train_dir: Path | None = None  # leak check: eval images with a (near) copy here are also reported apart

    def __post_init__(self) -> None:
        if self.per_class < 0 or self.max_errors < 0 or self.batch_size < 1:
            raise ValueError("per_class and max_errors must be >= 0 and batch_size >= 1")
        if not 0.0 < self.target_accuracy <= 1.0:
            raise ValueError(f"target accuracy must be in (0, 1], got {self.target_accuracy}")


@dataclass(frozen=True)
class Predictions:
    paths: tuple[str, ...]
    labels: np.ndarray  # [N] int
    logits: np.ndarray  # [N, C]
    probs: np.ndarray  # [N, C], softmax(logits / temperature)
    features: np.ndarray  # [N, D] penultimate

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def wrong(self) -> np.ndarray:
        return self.preds != self.labels


def image_source(paths: tuple[str, ...], belt_crops: bool, seed: int, size: int) -> ImageFn:
    """What the model is shown for image ``i``: the photo, or a deterministic belt crop of it."""
    from ..training.data import read_rgb

    if not belt_crops:
        return lambda i: read_rgb(paths[i])
    from ..sim.compose import render_belt_crop

    return lambda i: render_belt_crop(read_rgb(paths[i]), np.random.default_rng([seed, i]), out_size=size)


def predict_all(model, info, images: ImageFn, n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features and logits of images 0..n-1."""
    import torch
    from tqdm import tqdm

    from ..model import preprocess
    from .embed import batched, features_and_logits

    feats, logits = [], []
    for sl in tqdm(list(batched(n, batch_size)), desc="predict", unit="batch", leave=False):
        x = torch.from_numpy(preprocess([images(i) for i in range(sl.start, sl.stop)], info))
        f, lg = features_and_logits(model, x)
        feats.append(f)
        logits.append(lg)
    return np.concatenate(feats), np.concatenate(logits)


def gradcam_indices(p: Predictions, per_class: int, max_errors: int, seed: int) -> tuple[list[int], list[int]]:
    """(sample: ``per_class`` random images of each true class, errors: most confident first)."""
    rng = np.random.default_rng(seed)
    sample: list[int] = []
    for k in np.unique(p.labels):
        idx = np.flatnonzero(p.labels == k)
        sample.extend(sorted(rng.choice(idx, size=min(per_class, idx.size), replace=False).tolist()))
    wrong = np.flatnonzero(p.wrong)
    errors = wrong[np.argsort(-p.probs[wrong].max(1), kind="stable")].tolist()
    if len(errors) > max_errors:
        logger.warning("{} misclassified images; Grad-CAM on the {} most confident only (--max-errors)",
                       len(errors), max_errors)
    return sample, errors[:max_errors]


GRADCAM_BATCH = 8  # forward + backward: keep the activations of a batch small


def render_gradcams(model, info, images: ImageFn, indices: list[int], layer: str | None,
                    img_dir: Path) -> tuple[str, dict[int, tuple[str, str]]]:
    """Thumbnail + Grad-CAM overlay PNGs (for the predicted class) -> {index: (thumb, overlay)}."""
    import cv2
    import torch

    from ..model import preprocess
    from .embed import batched
    from .gradcam import GradCAM, overlay

    out: dict[int, tuple[str, str]] = {}
    img_dir.mkdir(parents=True, exist_ok=True)
    with GradCAM(model, layer) as cam:
        for sl in batched(len(indices), GRADCAM_BATCH):
            idx = indices[sl]
            crops = [images(i) for i in idx]
            maps, _ = cam(torch.from_numpy(preprocess(crops, info)))
            for i, crop, m in zip(idx, crops, maps):
                thumb = _thumb(crop)
                names = (f"img_{i:05d}.png", f"cam_{i:05d}.png")
                cv2.imwrite(str(img_dir / names[0]), cv2.cvtColor(thumb, cv2.COLOR_RGB2BGR))
                cv2.imwrite(str(img_dir / names[1]), cv2.cvtColor(overlay(thumb, m), cv2.COLOR_RGB2BGR))
                out[i] = (f"{img_dir.name}/{names[0]}", f"{img_dir.name}/{names[1]}")
        return cam.layer, out


def _thumb(rgb: np.ndarray, side: int = 160) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)


def uncertainty_charts(p: Predictions, summary: dict, target: float, img_dir: Path) -> dict[str, str]:
    from . import plots

    correct = ~p.wrong
    conf, marg, ent = (uncertainty.confidence(p.probs), uncertainty.margin(p.probs), uncertainty.entropy(p.probs))
    charts = {
        "entropy": plots.histogram_by_outcome(ent, correct, "Entropy of the prediction (normalised)",
                                              "entropy / log(C)", img_dir / "entropy.png"),
        "margin": plots.histogram_by_outcome(marg, correct, "Margin: top-1 minus top-2 probability",
                                             "margin", img_dir / "margin.png"),
        "confidence": plots.histogram_by_outcome(conf, correct, "Confidence: top-1 probability",
                                                 "confidence", img_dir / "confidence.png"),
    }
    curves, marks = {}, {}
    for name, s in (("confidence", conf), ("margin", marg)):
        rc = uncertainty.risk_coverage(s, correct)
        curves[name] = (rc.coverage, rc.accuracy)
        rec = summary["recommended"][name]
        if rec["threshold"] is not None:
            marks[name] = (rec["coverage"], rec["accuracy"])
    charts["risk_coverage"] = plots.risk_coverage_plot(curves, marks, target, img_dir / "risk_coverage.png")
    return {k: f"{img_dir.name}/{v.name}" for k, v in charts.items()}


def embedding_charts(p: Predictions, class_names: tuple[str, ...], seed: int, img_dir: Path) -> dict[str, str]:
    from . import plots
    from .embed import embedding_maps

    if len(p.labels) < 5:
        logger.warning("only {} images: no embedding map", len(p.labels))
        return {}
    out = {}
    for method, xy in embedding_maps(p.features, seed).items():
        path = plots.embedding_plot(xy, p.labels, p.wrong, class_names,
                                    f"{method} of penultimate features ({len(p.labels)} images; X = misclassified)",
                                    img_dir / f"embed_{method.lower().replace('-', '')}.png")
        out[method] = f"{img_dir.name}/{path.name}"
    return out


def top_k(probs: np.ndarray, class_names: tuple[str, ...], k: int = 3) -> list[tuple[str, float]]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [(class_names[j], round(float(probs[j]), 4)) for j in order]


def _predict(model, info, images: ImageFn, paths: tuple[str, ...], labels: np.ndarray,
             batch_size: int) -> Predictions:
    from ..training.calibration import softmax

    feats, logits = predict_all(model, info, images, len(paths), batch_size)
    return Predictions(paths, labels, logits, softmax(logits, info.temperature).astype(np.float32), feats)


def _leak_free(p: Predictions, class_names: tuple[str, ...], leaked: set[str], opts: AnalyseOptions) -> dict | None:
    """Metrics and thresholds without the images leaked from the training folder (None: no check)."""
    from ..training.metrics import classification_report, summary

    if opts.train_dir is None:
        return None
    keep = np.array([path not in leaked for path in p.paths])
    if keep.sum() < 2:
        return {"n": int(keep.sum())}
    rep = classification_report(p.labels[keep], p.probs[keep], class_names)
    unc = uncertainty.summarise(p.probs[keep], p.labels[keep], opts.target_accuracy,
                                config_thresholds=opts.vote_thresholds)
    return {"n": int(keep.sum()), "metrics": summary(rep), "macro_f1": rep["macro"]["f1"], "uncertainty": unc}


def _numbers(model_dir, info, split, p: Predictions, opts: AnalyseOptions, leaks: tuple[set[str], list]) -> dict:
    """The raw numbers of the report (``report.json``) before the Grad-CAM part is added."""
    from ..training.metrics import classification_report

    leaked, found = leaks
    return {
        "model": {"dir": str(model_dir), "name": info.name, "arch": info.arch, "version": info.version,
                  "input_size": info.input_size, "temperature": info.temperature, "sha256": info.fingerprint()},
        "data": {**split.describe(), "views": "belt crops (simulated)" if opts.belt_crops else "photos",
                 "seed": opts.seed},
        "metrics": classification_report(p.labels, p.probs, info.class_names, p.paths),
        "uncertainty": uncertainty.summarise(p.probs, p.labels, opts.target_accuracy,
                                             config_thresholds=opts.vote_thresholds),
        "leak_free": _leak_free(p, info.class_names, leaked, opts),
        "leaks": {"train_dir": None if opts.train_dir is None else str(opts.train_dir), "n": len(found),
                  "items": [lk.to_dict() for lk in found]},
    }


def analyse_model(model_dir: str | Path, data_dir: str | Path, out_dir: str | Path,
                  opts: AnalyseOptions = AnalyseOptions(), extra_links: list[tuple[str, str]] | None = None) -> dict:
    """Write ``out_dir/index.html``, ``out_dir/report.json`` and ``out_dir/img/``; return the numbers.

    Raises ``ModelLoadError`` / ``DatasetError`` / ``TargetLayerError`` for bad input (before
    any heavy work), with messages that say what to fix."""
    from ..model import load_torch_model
    from ..training.data import scan_split
    from ..training.evaluation import leak_check
    from ..training.plots import confusion_png
    from .gradcam import resolve_target_layer
    from .model_html import build_model_report
    from .report import write_report

    model, info = load_torch_model(model_dir)
    layer = resolve_target_layer(model, opts.target_layer, info.input_size)
    split = scan_split(data_dir, info.class_names)
    leaks = leak_check(split, opts.train_dir)
    out, img_dir = Path(out_dir), Path(out_dir) / "img"
    paths = tuple(str(s.path) for s in split.samples)
    images = image_source(paths, opts.belt_crops, opts.seed, info.input_size)
    p = _predict(model, info, images, paths, np.array([s.label for s in split.samples]), opts.batch_size)
    numbers = _numbers(model_dir, info, split, p, opts, leaks)
    charts = uncertainty_charts(p, numbers["uncertainty"], opts.target_accuracy, img_dir)
    cm = confusion_png(numbers["metrics"]["confusion"], info.class_names, img_dir / "confusion.png", info.name)
    charts["confusion"] = f"{img_dir.name}/{cm.name}"
    embeds = embedding_charts(p, info.class_names, opts.seed, img_dir) if opts.embed else {}
    sample, errors = gradcam_indices(p, opts.per_class, opts.max_errors, opts.seed)
    layer, tiles = render_gradcams(model, info, images, sorted(set(sample) | set(errors)), layer, img_dir)
    numbers.update({
        "gradcam": {"target_layer": layer, "sample": [paths[i] for i in sample], "errors": [paths[i] for i in errors]},
        "embedding": sorted(embeds),
        "worst_errors": [{"path": paths[i], "label": info.class_names[p.labels[i]],
                          "top3": top_k(p.probs[i], info.class_names)} for i in errors],
    })
    report = build_model_report(numbers, p, info.class_names, charts, embeds, (sample, errors, tiles))
    report.links.extend(extra_links or [])
    path = write_report(out, report, numbers)
    logger.info("report written to {}", path)
    return numbers
