"""De-rotating an item's crop by the min-area rectangle of its footprint (issue 10).

Items lie on the belt at any angle. The detector's footprint of an item gives its minimum-area
rectangle, i.e. its rotation modulo 90 degrees. Cutting the classifier's view along that
rectangle (rotated so its sides are axis-aligned, square with the same margin as
:func:`ewaste_stream.batching.square_crop`) leaves the classifier a 0/90/180/270-degree
ambiguity instead of any angle, and a tighter box. ``tools/orientation_study.py`` measured the
best case of this on belt crops of val photos (EfficientNet-Lite0, 160 px, trained on any
angle): 84.8 % with any angle, 86.7 % with the angle rounded to 90 degrees. In the pipeline,
cut along the detector's real footprint (1/4-scale mask, with shadow rims and motion blur), it
**lost**: on a fresh 20 s 1280x720 video (seed 31, 730 items) accuracy over all matched items
fell from 75.5 % to 69.3 % (accepted 90.6 % -> 91.0 %, rejects 16.6 % -> 23.8 %). So
``batching.derotate`` is off by default; it is kept so the measurement can be repeated with
better masks or models (``tools/orientation_study.py`` and ``replay --config`` with
``batching: {derotate: true}``).

Pure functions on numpy arrays; no state.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np


class Rect(NamedTuple):
    """A rotated rectangle in full-resolution px, OpenCV's ``minAreaRect`` convention."""

    cx: float
    cy: float
    w: float
    h: float
    angle: float  # degrees


def footprint_rect(mask: np.ndarray, x0: int, y0: int, scale: tuple[float, float]) -> Rect | None:
    """Min-area rectangle of the pixels set in ``mask`` (a footprint at the detector's
    downscaled resolution whose top-left pixel is ``(x0, y0)``), in full-resolution px.
    ``None`` when fewer than 3 pixels are set."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 3:
        return None
    sx, sy = scale
    pts = np.stack([(xs + x0 + 0.5) * sx, (ys + y0 + 0.5) * sy], axis=1).astype(np.float32)
    (cx, cy), (w, h), angle = cv2.minAreaRect(pts)
    # every mask pixel is a sx x sy square: grow the rectangle by about one pixel
    pad = 0.5 * (sx + sy)
    return Rect(float(cx), float(cy), float(w) + pad, float(h) + pad, float(angle))


def derotated_crop(image_bgr: np.ndarray, rect: Rect, margin: float = 0.15) -> np.ndarray:
    """RGB uint8 square view of the item in ``rect``, rotated so the rectangle's sides are
    horizontal/vertical; side = the rectangle's longest side x (1 + 2 margin); the picture is
    reflected where the square leaves the frame."""
    side = max(2, int(round(max(rect.w, rect.h) * (1.0 + 2.0 * margin))))
    m = cv2.getRotationMatrix2D((rect.cx, rect.cy), rect.angle, 1.0)
    m[:, 2] += (side / 2.0 - rect.cx, side / 2.0 - rect.cy)
    crop = cv2.warpAffine(image_bgr, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
