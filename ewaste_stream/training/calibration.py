"""Temperature scaling: one scalar T > 0 with softmax(logits / T), fitted on val by NLL.

Stored in ``model.json`` as ``temperature``; every backend divides logits by it, so the
voting stage gets probabilities that mean what they say.
"""

from __future__ import annotations

import math

import numpy as np

T_MIN, T_MAX = 0.05, 20.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll_at(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), np.asarray(labels)].mean())


def cross_entropy_at(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Mean cross-entropy of ``softmax(logits / T)`` against soft ``targets`` [N, C]."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-(np.asarray(targets, dtype=np.float64) * logp).sum(axis=1).mean())


def _golden_log_t(f, tol: float) -> float:
    """argmin over T in [T_MIN, T_MAX] of a unimodal ``f(log T)`` (golden-section search)."""
    a, b = math.log(T_MIN), math.log(T_MAX)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return float(math.exp((a + b) / 2))


def fit_temperature(logits, labels, tol: float = 1e-4) -> float:
    """T minimising the mean NLL of ``softmax(logits / T)`` (golden-section search on log T;
    NLL is unimodal in T). Deterministic; clipped to [T_MIN, T_MAX]."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(f"need logits [N, C] and labels [N] with N > 0, got {logits.shape}, {labels.shape}")
    return _golden_log_t(lambda u: nll_at(logits, labels, math.exp(u)), tol)


def fit_temperature_to(logits, targets, tol: float = 1e-4) -> float:
    """T making ``softmax(logits / T)`` closest (cross-entropy, i.e. KL) to the probabilities
    ``targets`` of a reference model on the same crops: how an approximation of a calibrated
    model (its int8 graph) is calibrated to it without labelled data."""
    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    if logits.ndim != 2 or logits.shape != targets.shape or len(logits) == 0:
        raise ValueError(f"need logits and targets of one shape [N, C] with N > 0, got {logits.shape}, "
                         f"{targets.shape}")
    return _golden_log_t(lambda u: cross_entropy_at(logits, targets, math.exp(u)), tol)
