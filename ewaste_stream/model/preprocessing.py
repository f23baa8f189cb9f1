"""The one place where crops become network input: resize + mean/std from ``model.json``.

Every backend, the benchmark and training's evaluation transforms call :func:`preprocess`,
so a model sees exactly the same pixels in training, evaluation and production.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .folder import ModelInfo

_CV2_INTERP = {"nearest": "INTER_NEAREST", "bilinear": "INTER_LINEAR", "bicubic": "INTER_CUBIC",
               "area": "INTER_AREA", "lanczos": "INTER_LANCZOS4"}


def preprocess(crops: Sequence[np.ndarray], info: "ModelInfo") -> np.ndarray:
    """RGB uint8 crops (H x W x 3, any size) -> float32 [B, 3, S, S], normalised.

    Each crop is resized (aspect ratio not kept: the detector's boxes are tight and the
    models are trained the same way) to ``info.input_size`` with ``info.interpolation``,
    scaled to 0..1, then ``(x - mean) / std`` per channel.
    """
    import cv2

    s = info.input_size
    interp = getattr(cv2, _CV2_INTERP[info.interpolation])
    scale = np.asarray(info.std, dtype=np.float32) * 255.0
    shift = np.asarray(info.mean, dtype=np.float32) * 255.0
    # written straight into channel planes, normalised one plane at a time: the same float32
    # arithmetic as (x - shift) / scale over H x W x 3, without broadcasting over the short last
    # axis and a transposed copy (about 3x faster; the classifier thread does this for every view)
    out = np.empty((len(crops), 3, s, s), dtype=np.float32)
    for i, crop in enumerate(crops):
        a = _check_crop(crop, i)
        if a.shape[0] != s or a.shape[1] != s:
            a = cv2.resize(a, (s, s), interpolation=interp)
        for ch in range(3):
            plane = out[i, ch]
            plane[...] = a[:, :, ch]
            plane -= shift[ch]
            plane /= scale[ch]
    return out


def _check_crop(crop: np.ndarray, i: int) -> np.ndarray:
    a = np.asarray(crop)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"crop {i}: expected an RGB uint8 array H x W x 3, got {a.dtype} {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"crop {i}: empty crop {a.shape}")
    return a
