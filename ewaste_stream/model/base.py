"""The classifier contract every backend honours (ONNX Runtime, PyTorch, test stubs).

The pipeline only ever sees this interface, so tests can inject a stub and production can
swap ONNX Runtime on CPU for CUDA torch without touching the pipeline.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Classifier(Protocol):
    """``predict`` takes RGB uint8 crops of any size (H x W x 3) and returns calibrated
    probabilities, float32 [B, C], rows summing to 1, in the order of ``class_names``.
    Preprocessing (resize, mean/std) comes from the model's ``model.json``; callers never
    resize or normalise themselves."""

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def name(self) -> str: ...  # model name for the wire (`model.name`)

    @property
    def sha256(self) -> str: ...  # sha256 of the weights for the wire (`model.sha256`)

    def predict(self, crops: Sequence[np.ndarray]) -> np.ndarray: ...
