"""preprocess: the single resize + mean/std step shared by every backend."""

from __future__ import annotations

import numpy as np
import pytest

from ewaste_stream.model import ModelInfo, preprocess

INFO = ModelInfo(name="p", arch="ewaste_small_cnn", class_names=("a", "b"), input_size=16,
                 mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0), interpolation="bilinear")


def test_constant_crop_normalises_per_channel():
    crop = np.zeros((7, 9, 3), np.uint8)
    crop[..., 0], crop[..., 1], crop[..., 2] = 255, 0, 51
    x = preprocess([crop], INFO)
    assert x.shape == (1, 3, 16, 16) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(x[0, :, 5, 5], [(1 - 0.5) / 0.5, (0 - 0.25) / 0.25, 0.2], atol=1e-6)


@pytest.mark.parametrize("shape", [(16, 16, 3), (1, 1, 3), (300, 40, 3), (15, 17, 3)])
def test_any_crop_size_becomes_input_size(shape):
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(3)]
    x = preprocess(crops, INFO)
    assert x.shape == (3, 3, 16, 16) and np.isfinite(x).all()


def test_channel_order_is_rgb_as_given():
    crop = np.zeros((16, 16, 3), np.uint8)
    crop[..., 0] = 255  # red only
    x = preprocess([crop], INFO.model_copy(update={"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}))
    assert x[0, 0].min() == 1.0 and x[0, 1:].max() == 0.0


def test_input_size_crop_is_not_resampled():
    crop = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    x = preprocess([crop], INFO.model_copy(update={"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}))
    np.testing.assert_allclose(x[0].transpose(1, 2, 0) * 255, crop, atol=1e-3)


def test_empty_batch():
    assert preprocess([], INFO).shape == (0, 3, 16, 16)


@pytest.mark.parametrize("crop, match", [
    (np.zeros((8, 8, 3), np.float32), "uint8"),
    (np.zeros((8, 8), np.uint8), "H x W x 3"),
    (np.zeros((8, 8, 4), np.uint8), "H x W x 3"),
    (np.zeros((0, 8, 3), np.uint8), "empty crop"),
])
def test_bad_crops_are_rejected(crop, match):
    with pytest.raises(ValueError, match=match):
        preprocess([np.zeros((4, 4, 3), np.uint8), crop], INFO)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "area"])
def test_same_values_as_the_plain_formula(interpolation):
    """Bit for bit what resize, (x / 255 - mean) / std in float32 as (x - 255 mean) / (255 std), and
    HWC -> CHW give: every backend, training's evaluation and the shipped metrics rest on these pixels."""
    import cv2

    info = INFO.model_copy(update={"interpolation": interpolation, "mean": (0.485, 0.456, 0.406),
                                   "std": (0.229, 0.224, 0.225)})
    rng = np.random.default_rng(2)
    crops = [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in rng.integers(5, 60, (6, 2))]
    crops.append(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))  # input size already: not resampled
    interp = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}[interpolation]
    ref = np.stack([cv2.resize(c, (16, 16), interpolation=interp) if c.shape[:2] != (16, 16) else c
                    for c in crops]).astype(np.float32)
    ref = (ref - np.float32(255.0) * np.asarray(info.mean, np.float32)) / (np.float32(255.0) * np.asarray(info.std, np.float32))
    x = preprocess(crops, info)
    assert x.flags["C_CONTIGUOUS"] and x.dtype == np.float32
    np.testing.assert_array_equal(x, ref.transpose(0, 3, 1, 2))
