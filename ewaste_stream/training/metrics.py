"""Classification metrics from labels and probabilities (pure numpy + scikit-learn).

``classification_report(labels, probs, class_names, paths)`` returns a JSON-ready dict:
accuracy, macro/weighted precision/recall/F1, per-class precision/recall/F1/support,
confusion (raw and row-normalised), ROC-AUC one-vs-rest, mean and per-class confidence,
expected calibration error, NLL and the misclassified items.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

ECE_BINS = 15


def _check(labels: np.ndarray, probs: np.ndarray) -> None:
    if probs.ndim != 2 or labels.ndim != 1 or len(labels) != len(probs):
        raise ValueError(f"labels [N] and probs [N, C] must match, got {labels.shape} and {probs.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must lie in 0..{probs.shape[1] - 1}")


def expected_calibration_error(labels, probs, n_bins: int = ECE_BINS) -> float:
    """Top-1 ECE: sum over equal-width confidence bins of |acc - conf| weighted by bin share.
    Bins are (lo, hi], the first one [0, hi]."""
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    _check(labels, probs)
    if len(labels) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def confusion(labels, preds, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels), np.asarray(preds)), 1)
    return cm


def normalise_rows(cm: np.ndarray) -> np.ndarray:
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)


def nll(labels, probs) -> float:
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    if len(labels) == 0:
        return 0.0
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))))


def roc_auc_ovr(labels, probs) -> float | None:
    """Macro one-vs-rest ROC-AUC over the classes present in ``labels``; None if < 2 present."""
    from sklearn.metrics import roc_auc_score

    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    present = np.unique(labels)
    if len(present) < 2:
        return None
    scores = [roc_auc_score(labels == c, probs[:, c]) for c in present]
    return float(np.mean(scores))


def _prf(labels, preds, num_classes: int) -> dict:
    from sklearn.metrics import precision_recall_fscore_support

    out = {}
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, preds, labels=np.unique(labels),
                                                     average=avg, zero_division=0)
        out[avg] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    p, r, f, s = precision_recall_fscore_support(labels, preds, labels=list(range(num_classes)),
                                                 average=None, zero_division=0)
    out["per_class"] = (p, r, f, s)
    return out


def classification_report(labels, probs, class_names: Sequence[str],
                          paths: Sequence[str] | None = None) -> dict:
    """All metrics of one evaluation set. Macro averages run over the classes present."""
    labels, probs = np.asarray(labels, dtype=np.int64), np.asarray(probs, dtype=np.float64)
    _check(labels, probs)
    n, c = len(labels), len(class_names)
    if probs.shape[1] != c:
        raise ValueError(f"probs have {probs.shape[1]} columns but there are {c} class names")
    if n == 0:
        return {"n": 0}
    preds, conf = probs.argmax(axis=1), probs.max(axis=1)
    cm = confusion(labels, preds, c)
    prf = _prf(labels, preds, c)
    p, r, f, s = prf["per_class"]
    per_class = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                        "support": int(s[i]),
                        "mean_confidence": float(conf[labels == i].mean()) if s[i] else None}
                 for i, name in enumerate(class_names)}
    wrong = np.flatnonzero(preds != labels)
    return {
        "n": int(n),
        "accuracy": float((preds == labels).mean()),
        "macro": prf["macro"], "weighted": prf["weighted"],
        "per_class": per_class,
        "roc_auc_ovr": roc_auc_ovr(labels, probs),
        "mean_confidence": float(conf.mean()),
        "ece": expected_calibration_error(labels, probs),
        "nll": nll(labels, probs),
        "confusion": cm.tolist(),
        "confusion_normalised": np.round(normalise_rows(cm), 4).tolist(),
        "misclassified": [{"path": paths[i] if paths is not None else int(i),
                           "label": class_names[labels[i]], "pred": class_names[preds[i]],
                           "confidence": round(float(conf[i]), 4)} for i in wrong],
    }


def summary(report: dict) -> dict:
    """The headline figures of a report (for logs, model.json and tables)."""
    if not report.get("n"):
        return {"n": 0}
    return {"n": report["n"], "accuracy": round(report["accuracy"], 4),
            "macro_f1": round(report["macro"]["f1"], 4), "ece": round(report["ece"], 4),
            "nll": round(report["nll"], 4), "mean_confidence": round(report["mean_confidence"], 4)}
