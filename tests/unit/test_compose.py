"""Compositing: cut-out, belt texture, sprites, training crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ewaste_stream.sim.compose import (Pose, belt_texture, cutout, detector_box, make_sprite, one_object,
                                       paste_sprite, render_belt_crop)
from ewaste_stream.sim.effects import Realism

OFF = Realism(texture=0, lighting=0, vignette=0, noise=0, motion_blur=0, shadows=0, rotation=0, dark_items=0)


def product_photo(rng: np.random.Generator, colour=(200, 30, 30)) -> tuple[np.ndarray, np.ndarray]:
    """A 150x150 catalogue photo: a coloured rotated box on white with JPEG-like noise; and its true mask."""
    img = np.full((150, 150, 3), 252, np.uint8)
    box = cv2.boxPoints(((75, 70), (90, 50), 25)).astype(np.int32)
    mask = np.zeros((150, 150), np.uint8)
    cv2.fillPoly(mask, [box], 1)
    img[mask > 0] = colour
    noisy = img.astype(np.int16) + rng.integers(-3, 4, img.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8), mask.astype(bool)


def scene_photo(rng: np.random.Generator) -> np.ndarray:
    coarse = rng.integers(0, 255, (10, 10, 3)).astype(np.uint8)
    return cv2.resize(coarse, (150, 150), interpolation=cv2.INTER_CUBIC)


def test_cutout_removes_white_background():
    img, truth = product_photo(np.random.default_rng(0))
    rgb, alpha = cutout(img)
    assert rgb.shape == img.shape and alpha.dtype == np.float32 and alpha.shape == truth.shape
    fg = alpha > 0.5
    iou = (fg & truth).sum() / (fg | truth).sum()
    assert iou > 0.9
    assert alpha[:10, :10].max() == 0.0  # background corner fully transparent
    assert alpha[cv2.erode(truth.astype(np.uint8), np.ones((7, 7))) > 0].min() > 0.99  # opaque inside


def test_cutout_keeps_scene_tile():
    img = scene_photo(np.random.default_rng(1))
    rgb, alpha = cutout(img)
    assert np.array_equal(rgb, img) and alpha.min() == 1.0


def test_cutout_keeps_tile_when_nothing_would_be_left():
    img = np.full((150, 150, 3), 250, np.uint8)
    img[70:74, 70:74] = 0  # a speck, not a product
    _, alpha = cutout(img)
    assert alpha.min() == 1.0


def test_one_object_keeps_the_largest_product_of_a_photo():
    """Two products (and a banner) in one photo: the sprite is the biggest product alone."""
    _, big = product_photo(np.random.default_rng(4))
    small = np.zeros_like(big)
    small[115:140, 20:50] = True  # a second product
    small[2:6, 10:140] = True  # a watermark banner
    alpha = cv2.GaussianBlur((big | small).astype(np.float32), (0, 0), 0.8)  # as cutout() leaves it
    assert cv2.connectedComponents((alpha > 0.5).astype(np.uint8))[0] - 1 == 3
    one = one_object(alpha)
    fg = one > 0.5
    assert (fg & big).sum() / (fg | big).sum() > 0.9
    assert one[small].max() == 0.0 and cv2.connectedComponents((one > 0.01).astype(np.uint8))[0] - 1 == 1
    single = cutout(product_photo(np.random.default_rng(5))[0])[1]
    assert np.array_equal(one_object(single), single)  # one part: unchanged


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((10, 10, 4), np.uint8)])
def test_cutout_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        cutout(bad)


def test_belt_texture_is_dark_and_wraps_when_periodic():
    rng = np.random.default_rng(2)
    belt = belt_texture(120, 600, rng, periodic=True).astype(np.float32)
    assert belt.shape == (120, 600, 3)
    assert 25 < belt.mean() < 80
    neighbour = np.abs(np.diff(belt, axis=1)).mean()
    wrap = np.abs(belt[:, 0] - belt[:, -1]).mean()
    assert wrap < 2.0 * neighbour  # no visible seam where the loop closes
    assert belt.std() > 2.0  # textured
    flat = belt_texture(50, 60, rng, strength=0)
    assert flat.std(axis=(0, 1)).max() == 0


def test_sprite_centroid_and_paste():
    img, truth = product_photo(np.random.default_rng(3))
    rgb, alpha = cutout(img)
    sprite = make_sprite(rgb, alpha, Pose(angle=30, scale=1.0), OFF, blur_px=1)
    canvas = np.zeros((300, 300, 3), np.uint8)
    paste_sprite(canvas, sprite, 40, 60)
    ys, xs = np.nonzero(canvas.astype(int).sum(axis=2) > 130)  # half the item's brightness = alpha 0.5
    assert abs(xs.mean() - (40 + sprite.centroid[0])) < 1.0
    assert abs(ys.mean() - (60 + sprite.centroid[1])) < 1.0
    x0, y0, x1, y1 = detector_box(sprite, 40, 60)
    assert abs(x0 - xs.min()) <= 1 and abs(x1 - 1 - xs.max()) <= 1
    assert abs(y0 - ys.min()) <= 1 and abs(y1 - 1 - ys.max()) <= 1
    paste_sprite(canvas, sprite, -500, -500)  # entirely outside: a no-op, no error


def test_render_belt_crop_shape_and_determinism():
    img, _ = product_photo(np.random.default_rng(4))
    a = render_belt_crop(img, np.random.default_rng(7), out_size=96)
    b = render_belt_crop(img, np.random.default_rng(7), out_size=96)
    c = render_belt_crop(img, np.random.default_rng(8), out_size=96)
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_render_belt_crop_centres_the_item_on_the_belt():
    img, _ = product_photo(np.random.default_rng(5), colour=(30, 220, 30))
    crop = render_belt_crop(img, np.random.default_rng(0), out_size=128, angle=0.0, scale=1.0, realism=OFF)
    green = (crop[:, :, 1].astype(int) - crop[:, :, 0]) > 100
    assert green.mean() > 0.15  # the item fills a good part of the crop ...
    ys, xs = np.nonzero(green)
    assert abs(xs.mean() - 64) < 20 and abs(ys.mean() - 64) < 20  # ... around its centre
    corners = np.concatenate([crop[:6, :6].reshape(-1, 3), crop[-6:, -6:].reshape(-1, 3)])
    assert corners.mean() < 90  # and the margin is dark belt, not the white photo background


@pytest.mark.parametrize("size,obj", [(96, 20), (150, 30), (64, 14)])
def test_belt_crop_of_a_small_item_on_a_wide_white_margin(size, obj):
    # the cut-out leaves a small silhouette, so the belt scale blows the whole tile up past
    # the vignette bank's width (this raised "ValueError: high <= 0" before)
    img = np.full((size, size, 3), 255, np.uint8)
    o = (size - obj) // 2
    img[o:o + obj, o:o + obj] = (40, 60, 200)
    for s in range(4):
        crop = render_belt_crop(img, np.random.default_rng([43, s, 0]), out_size=96)
        assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
