"""De-rotation of item crops by the footprint's min-area rectangle."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ewaste_stream.orient import derotated_crop, footprint_rect


def _frame_with_bar(angle: float, size=(400, 300), bar=(160, 60), centre=(200, 150)):
    """A bright bar (with a red notch at one end, to follow it) on a dark frame, rotated by ``angle``."""
    img = np.full((size[1], size[0], 3), 30, np.uint8)
    pts = cv2.boxPoints((centre, bar, angle)).astype(np.int32)
    cv2.fillPoly(img, [pts], (220, 220, 220))
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(mask, [pts], 1)
    return img, mask


@pytest.mark.parametrize("angle", [0.0, 17.0, 45.0, 63.0, 90.0, 128.0, -35.0])
def test_derotated_bar_is_axis_aligned_and_fills_its_box(angle):
    img, mask = _frame_with_bar(angle)
    small = cv2.resize(mask, (100, 75), interpolation=cv2.INTER_NEAREST)  # the detector works downscaled
    rect = footprint_rect(small, 0, 0, (4.0, 4.0))
    assert rect is not None and max(rect.w, rect.h) == pytest.approx(160, abs=10)
    crop = derotated_crop(img, rect, margin=0.15)
    assert crop.shape[0] == crop.shape[1] and crop.shape[2] == 3
    bright = crop[:, :, 0] > 128
    ys, xs = np.nonzero(bright)
    box = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
    # axis-aligned: the bar fills its bounding box (a bar tilted by >= 10 degrees fills < 75 %)
    assert bright.sum() / box > 0.85
    # and the long side spans ~1 / 1.3 of the square (margin 0.15 on each side)
    assert max(xs.max() - xs.min(), ys.max() - ys.min()) / crop.shape[0] == pytest.approx(1 / 1.3, abs=0.08)


def test_footprint_rect_uses_the_offset_and_scale():
    mask = np.zeros((10, 10), np.uint8)
    mask[2:6, 3:9] = 1
    r = footprint_rect(mask, 100, 50, (2.0, 3.0))
    assert (r.cx, r.cy) == pytest.approx(((100 + 6) * 2.0, (50 + 4) * 3.0), abs=0.6)
    assert sorted((r.w, r.h)) == pytest.approx(sorted((6 * 2.0, 4 * 3.0)), abs=3.0)


def test_footprint_rect_of_an_empty_mask_is_none():
    assert footprint_rect(np.zeros((5, 5), np.uint8), 0, 0, (1.0, 1.0)) is None
