"""Uncertainty of a classifier's probabilities and the reject threshold they support.

Pure numpy. The voting stage rejects an item (manual-sort bin) when its fused confidence is
below ``vote.min_confidence`` or its top-1 minus top-2 margin is below ``vote.min_margin``;
this module measures what each threshold buys: the **risk-coverage curve** (accuracy among
the accepted items vs the fraction accepted) and the smallest threshold that reaches a target
accepted-accuracy, with the reject rate it costs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# score name -> the config key its threshold goes to
CONFIG_KEYS = {"confidence": "vote.min_confidence", "margin": "vote.min_margin"}


def _check_probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must be [N, C] with C >= 2, got shape {p.shape}")
    return p


def entropy(probs: np.ndarray, normalised: bool = True) -> np.ndarray:
    """Shannon entropy per row (nats); divided by log(C) when ``normalised`` (0..1)."""
    p = _check_probs(probs)
    h = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1)
    return h / np.log(p.shape[1]) if normalised else h


def confidence(probs: np.ndarray) -> np.ndarray:
    """Top-1 probability per row."""
    return _check_probs(probs).max(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row."""
    top2 = np.sort(_check_probs(probs), axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


@dataclass(frozen=True, slots=True)
class RiskCoverage:
    """One point per distinct threshold: accept when score >= threshold."""

    thresholds: np.ndarray  # ascending; the first is the lowest score (everything accepted)
    coverage: np.ndarray  # fraction accepted
    accuracy: np.ndarray  # accuracy among the accepted
    n_accepted: np.ndarray

    def at_coverage(self, target: float) -> dict[str, float]:
        """The point with the largest coverage <= ``target`` (e.g. 0.9: reject 10%)."""
        ok = np.nonzero(self.coverage <= target + 1e-12)[0]
        i = int(ok[0]) if ok.size else len(self.coverage) - 1
        return {"threshold": float(self.thresholds[i]), "coverage": float(self.coverage[i]),
                "accuracy": float(self.accuracy[i]), "n_accepted": int(self.n_accepted[i])}

    def aurc(self) -> float:
        """Area under the risk (1 - accuracy) vs coverage curve: lower is better."""
        cov, risk = self.coverage[::-1], 1.0 - self.accuracy[::-1]
        return float(np.sum(np.diff(cov, prepend=0.0) * risk))


def risk_coverage(scores: np.ndarray, correct: np.ndarray) -> RiskCoverage:
    """Accuracy among items with score >= t, and the fraction they are, for every distinct t."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    c = np.asarray(correct, dtype=bool).ravel()
    if s.size == 0 or s.size != c.size:
        raise ValueError(f"scores and correct must be non-empty and the same length ({s.size} vs {c.size})")
    order = np.argsort(-s, kind="stable")  # most confident first
    s_sorted, c_sorted = s[order], c[order]
    n_acc = np.arange(1, s.size + 1)
    hits = np.cumsum(c_sorted)
    # for ties, only the last index of each distinct score is a reachable threshold
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    t, n, h = s_sorted[last][::-1], n_acc[last][::-1], hits[last][::-1]
    return RiskCoverage(thresholds=t, coverage=n / s.size, accuracy=h / n, n_accepted=n)


@dataclass(frozen=True, slots=True)
class Recommendation:
    score: str  # "confidence" | "margin"
    config_key: str
    target_accuracy: float
    threshold: float | None  # None: no threshold reaches the target with enough accepted items
    coverage: float
    reject_rate: float
    accuracy: float
    n_accepted: int
    n_total: int

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.threshold is None:
            return (f"{self.config_key}: no threshold reaches {self.target_accuracy:.1%} accepted-accuracy "
                    f"on these {self.n_total} items (best {self.accuracy:.1%} at {self.coverage:.1%} coverage)")
        return (f"{self.config_key}: {self.threshold:.3f} -> accepted accuracy {self.accuracy:.2%}, "
                f"rejects {self.reject_rate:.1%} ({self.n_total - self.n_accepted} of {self.n_total})")


def recommend_threshold(scores: np.ndarray, correct: np.ndarray, score: str = "confidence",
                        target_accuracy: float = 0.98, min_accepted: int = 10) -> Recommendation:
    """The smallest threshold whose accepted accuracy reaches ``target_accuracy`` with at least
    ``min_accepted`` items accepted (fewer says nothing). Threshold 0 when no reject is needed."""
    if score not in CONFIG_KEYS:
        raise ValueError(f"score must be one of {sorted(CONFIG_KEYS)}, got {score!r}")
    if not 0.0 < target_accuracy <= 1.0:
        raise ValueError(f"target_accuracy must be in (0, 1], got {target_accuracy}")
    rc = risk_coverage(scores, correct)
    n = int(rc.n_accepted[0])
    ok = np.nonzero((rc.accuracy >= target_accuracy - 1e-12) & (rc.n_accepted >= min(min_accepted, n)))[0]
    if ok.size == 0:
        enough = rc.n_accepted >= min(min_accepted, n)
        i = int(np.argmax(np.where(enough, rc.accuracy, -1.0)))
        return Recommendation(score, CONFIG_KEYS[score], target_accuracy, None, float(rc.coverage[i]),
                              1.0 - float(rc.coverage[i]), float(rc.accuracy[i]), int(rc.n_accepted[i]), n)
    i = int(ok[0])
    thr = 0.0 if i == 0 else float(rc.thresholds[i])
    return Recommendation(score, CONFIG_KEYS[score], target_accuracy, round(thr, 4), float(rc.coverage[i]),
                          1.0 - float(rc.coverage[i]), float(rc.accuracy[i]), int(rc.n_accepted[i]), n)


def operating_point(probs: np.ndarray, labels: np.ndarray, min_confidence: float, min_margin: float) -> dict:
    """What the voting stage's two thresholds together do here: accept when confidence >=
    ``min_confidence`` and margin >= ``min_margin``."""
    p = _check_probs(probs)
    correct = p.argmax(1) == np.asarray(labels)
    accept = (confidence(p) >= min_confidence) & (margin(p) >= min_margin)
    n_acc = int(accept.sum())
    return {"min_confidence": float(min_confidence), "min_margin": float(min_margin), "n_total": int(p.shape[0]),
            "n_accepted": n_acc, "coverage": n_acc / p.shape[0], "reject_rate": 1.0 - n_acc / p.shape[0],
            "accuracy": float(correct[accept].mean()) if n_acc else None,
            "errors_accepted": int((accept & ~correct).sum()), "errors_rejected": int((~accept & ~correct).sum())}


def summarise(probs: np.ndarray, labels: np.ndarray, target_accuracy: float = 0.98,
              coverages: tuple[float, ...] = (1.0, 0.95, 0.9, 0.8),
              config_thresholds: tuple[float, float] | None = None) -> dict:
    """Everything the report needs as plain numbers (JSON-ready); ``config_thresholds`` =
    the configured (min_confidence, min_margin), evaluated together as ``at_config``."""
    p = _check_probs(probs)
    correct = p.argmax(1) == np.asarray(labels)
    out: dict = {"n": int(p.shape[0]), "accuracy": float(correct.mean()),
                 "mean_entropy": float(entropy(p).mean()), "recommended": {}, "risk_coverage": {}}
    if config_thresholds is not None:
        out["at_config"] = operating_point(p, labels, *config_thresholds)
    for name, s in (("confidence", confidence(p)), ("margin", margin(p))):
        rc = risk_coverage(s, correct)
        out["risk_coverage"][name] = {"aurc": rc.aurc(), "at_coverage": {f"{c:.2f}": rc.at_coverage(c) for c in coverages}}
        out["recommended"][name] = recommend_threshold(s, correct, name, target_accuracy).to_dict()
    return out
