"""Start-up self-check of a classifier, and building the classifier from the config.

``self_check`` runs before the first frame: it logs what will classify the items (backend,
device and its name, precision, compiled or not, channels_last) and times a warm-up batch
and a second batch per size, so a misconfigured GPU shows up in the first lines of the log
and not as late decisions. It raises :class:`ModelLoadError` when the model does not give
one probability row per crop.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from loguru import logger

from .weights import ModelLoadError

if TYPE_CHECKING:  # pragma: no cover
    from .base import Classifier


@dataclass(frozen=True)
class SelfCheckReport:
    backend: str
    device: str
    device_name: str
    precision: str
    compiled: bool
    channels_last: bool
    first_ms: dict[int, float] = field(default_factory=dict)  # batch size -> first (warm-up) call
    steady_ms: dict[int, float] = field(default_factory=dict)  # batch size -> the call after it

    def line(self) -> str:
        times = ", ".join(f"batch {b}: {self.first_ms[b]:.1f} ms warm-up, {self.steady_ms[b]:.1f} ms"
                          for b in sorted(self.first_ms))
        comp = "compiled" if self.compiled else "eager"
        return (f"classifier self-check: {self.backend} on {self.device} ({self.device_name}), {self.precision}, "
                f"{comp}, channels_last={self.channels_last}; {times}")


def describe_device(device: str) -> str:
    """Human name of ``device`` ('NVIDIA H100 80GB HBM3', or the CPU)."""
    if str(device).startswith("cuda"):
        try:
            import torch

            return torch.cuda.get_device_name(torch.device(device))
        except Exception as exc:  # noqa: BLE001 - a name is nice to have, never fatal
            return f"CUDA device (name unavailable: {exc})"
    return platform.processor() or platform.machine() or "CPU"


def _facts(clf: Any) -> dict[str, Any]:
    device = str(getattr(clf, "device", "cpu"))
    backend = str(getattr(clf, "backend", type(clf).__name__))
    if backend == "onnx":
        backend = f"onnx ({getattr(clf, 'provider', '?')})"
    precision = getattr(clf, "precision", None) or ("fp16" if getattr(clf, "amp", False) else "fp32")
    return {"backend": backend, "device": device, "device_name": describe_device(device), "precision": precision,
            "compiled": bool(getattr(clf, "compiled", False)), "channels_last": bool(getattr(clf, "channels_last", False))}


def self_check(classifier: "Classifier", batch_sizes: Sequence[int] = (1,), crop_side: int | None = None,
               seed: int = 0) -> SelfCheckReport:
    """Log the device/backend/precision and time two batches of random crops per batch size
    (the first is the warm-up). Crops are ``crop_side`` px (default 1.25 x the model input,
    so the resize runs too)."""
    facts = _facts(classifier)
    info = getattr(classifier, "info", None)
    side = crop_side or int(round(1.25 * (info.input_size if info is not None else 224)))
    rng = np.random.default_rng(seed)
    first, steady = {}, {}
    for b in sorted({int(v) for v in batch_sizes}):
        crops = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(b)]
        for out in (first, steady):
            t0 = time.perf_counter()
            try:
                probs = classifier.predict(crops)
            except Exception as exc:  # noqa: BLE001 - turned into a start-up error naming the cause
                raise ModelLoadError(f"classifier self-check failed on a batch of {b} on {facts['device']}: "
                                     f"{type(exc).__name__}: {exc}") from exc
            out[b] = round(1e3 * (time.perf_counter() - t0), 2)
            _check_probs(probs, b, len(classifier.class_names))
    report = SelfCheckReport(**facts, first_ms=first, steady_ms=steady)
    logger.info(report.line())
    return report


def _check_probs(probs: np.ndarray, b: int, n_classes: int) -> None:
    p = np.asarray(probs)
    if p.shape != (b, n_classes):
        raise ModelLoadError(f"classifier self-check: expected probabilities of shape {(b, n_classes)}, got {p.shape}")
    if not np.isfinite(p).all() or np.abs(p.sum(axis=1) - 1.0).max() > 1e-3:
        raise ModelLoadError("classifier self-check: the model gives non-finite or unnormalised probabilities "
                             "(broken weights, or fp16 overflow: try model.precision: bf16 or fp32)")


def classifier_from_config(config: Any, check: bool = True) -> "Classifier":
    """The classifier a daemon/replay ``Config`` asks for (``model.*``; batch buckets from
    ``batching.max_batch``), self-checked at the batch sizes the batcher sends. Raises
    :class:`ModelLoadError` with a message naming the problem."""
    from . import load_classifier  # the package attribute (tests replace it with a stub)
    from .cuda import AccelOptions

    m, max_batch = config.model, config.batching.max_batch
    try:
        opts = AccelOptions(precision=m.precision, compile=m.compile, compile_mode=m.compile_mode,
                            channels_last=m.channels_last, batch_sizes=tuple(m.batch_buckets or ()),
                            max_batch=max_batch)
    except ValueError as exc:
        raise ModelLoadError(f"model: {exc}") from None
    clf = load_classifier(m.dir, backend=m.backend, device=m.device, threads=m.threads, accel=opts)
    if check:
        self_check(clf, check_batch_sizes(clf, max_batch))
    return clf


CPU_CHECK_BATCH = 4  # the largest batch the start-up check runs on the CPU


def check_batch_sizes(classifier: Any, max_batch: int) -> list[int]:
    """Batch sizes the start-up check runs. On a GPU, or with a compiled model, 1 and
    ``max_batch``: each size is a shape the model must have built (a bucket, a CUDA graph, a
    cuDNN plan), and a failure there belongs in the first lines of the log. On the CPU the graph
    takes any batch size; 1 and at most ``CPU_CHECK_BATCH`` prove that, where two batches of 32
    would add ~0.7 s to every replay's start-up."""
    gpu = str(getattr(classifier, "device", "cpu")).startswith("cuda") or bool(getattr(classifier, "compiled", False))
    return sorted({1, max_batch if gpu else min(max_batch, CPU_CHECK_BATCH)})
