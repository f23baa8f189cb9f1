"""The device preprocessing path (run here on the CPU device) gives what ``preprocess`` gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ewaste_stream import CLASS_NAMES
from ewaste_stream.model import ModelInfo, preprocess
from ewaste_stream.model.gpu_preprocess import DevicePreprocessor, source_coords

torch.set_num_threads(1)
S = 48
INFO = ModelInfo(name="t", arch="a", class_names=CLASS_NAMES, input_size=S, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
ONE_LEVEL = 1.0 / (255.0 * min(INFO.std))  # one grey level after normalisation


def _info(interp: str) -> ModelInfo:
    return INFO.model_copy(update={"interpolation": interp})


def _crops(seed: int = 0, n: int = 9) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sides = [(S, S), (1, 1), (S // 2, S * 2), (S * 3, S - 1)]  # exact, tiny, up/down, bigger than max_side
    sides += [(int(rng.integers(2, 90)), int(rng.integers(2, 90))) for _ in range(n - len(sides))]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sides]


@pytest.mark.parametrize("interp, max_levels, max_frac_off", [
    ("nearest", 0, 0.0),
    ("bilinear", 1, 0.25),  # OpenCV's fixed-point uint8 resize: one grey level at most
    ("bicubic", 1, 0.01),
    ("area", 0, 0.0),  # resized on the host with OpenCV, exactly as preprocess
    ("lanczos", 0, 0.0),
])
def test_matches_preprocess(interp, max_levels, max_frac_off):
    info, crops = _info(interp), _crops()
    ref = preprocess(crops, info)
    got = DevicePreprocessor(info, "cpu")(crops)
    assert got.dtype == torch.float32 and tuple(got.shape) == ref.shape
    diff = np.abs(got.numpy() - ref)
    assert diff.max() <= max_levels * ONE_LEVEL + 1e-5
    assert (diff > 1e-5).mean() <= max_frac_off
    np.testing.assert_array_equal(got.numpy()[0], ref[0])  # an S x S crop is not resampled at all


def test_padding_channels_last_and_buffer_reuse():
    info = _info("bicubic")
    prep = DevicePreprocessor(info, "cpu", channels_last=True)
    a, b = _crops(1, 5), _crops(2, 3)
    first = prep(a, pad_to=8)
    second = prep(b)  # reuses (and overwrites) the host buffer
    assert tuple(first.shape) == (8, 3, S, S) and first.is_contiguous(memory_format=torch.channels_last)
    assert torch.count_nonzero(first[5:]) == 0
    np.testing.assert_array_equal(first[:5].numpy(), DevicePreprocessor(info, "cpu")(a).numpy())
    np.testing.assert_array_equal(second.numpy(), DevicePreprocessor(info, "cpu")(b).numpy())


@pytest.mark.parametrize("crops, pad_to, error", [
    ([], None, "no crops"),
    ([np.zeros((4, 4, 3), np.uint8)] * 3, 2, "pad_to=2"),
    ([np.zeros((4, 4), np.uint8)], None, "crop 0: expected an RGB uint8"),
    ([np.zeros((4, 4, 3), np.float32)], None, "crop 0: expected an RGB uint8"),
    ([np.zeros((4, 4, 3), np.uint8), np.zeros((0, 4, 3), np.uint8)], None, "crop 1: empty"),
])
def test_bad_input(crops, pad_to, error):
    with pytest.raises(ValueError, match=error):
        DevicePreprocessor(INFO, "cpu")(crops, pad_to=pad_to)


@pytest.mark.parametrize("n_src, size, mode, expected", [
    (2, 4, "bilinear", [-0.25, 0.25, 0.75, 1.25]),  # half-pixel centres (OpenCV / align_corners=False)
    (4, 2, "bicubic", [0.5, 2.5]),
    (4, 4, "bilinear", [0.0, 1.0, 2.0, 3.0]),  # same size: the pixels themselves
    (3, 6, "nearest", [0, 0, 1, 1, 2, 2]),  # OpenCV INTER_NEAREST: floor(j * n / size)
])
def test_source_coords(n_src, size, mode, expected):
    x = source_coords(n_src, size, mode)
    np.testing.assert_allclose(x, expected)
    assert not x.flags.writeable


@pytest.mark.parametrize("n_src, size", [(250, 224), (241, 224), (200, 224), (150, 224), (7, 224)])
def test_nearest_picks_the_columns_opencv_picks(n_src, size):
    import cv2

    ramp = np.tile(np.arange(n_src, dtype=np.uint8)[None, :], (2, 1))  # pixel value = its column
    picked = cv2.resize(ramp, (size, 2), interpolation=cv2.INTER_NEAREST)[0]
    np.testing.assert_array_equal(source_coords(n_src, size, "nearest"), picked)


def test_source_coords_rejects_unsupported_mode():
    with pytest.raises(ValueError, match="area"):
        source_coords(10, 4, "area")


def test_max_side_must_hold_the_input():
    with pytest.raises(ValueError, match="max_side"):
        DevicePreprocessor(INFO, "cpu", max_side=S - 1)
