"""Grad-CAM: output shapes across architectures, target-layer choice, and that the heatmap
follows the object (a tiny conv net trained here to detect a bright square)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
from torch import nn  # noqa: E402

from ewaste_stream.analysis.gradcam import (GradCAM, TargetLayerError, auto_target_layer, mass_centre,  # noqa: E402
                                            normalise_maps, overlay, resolve_target_layer)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _tiny_cnn(in_ch: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))


# arch, timm kwargs, input side, expected target layer
ARCHS = [
    ("tf_efficientnet_lite0", {}, 64, "bn2"),
    ("convnext_atto", {}, 64, "stages.3"),
    ("maxvit_tiny_tf_224", {"img_size": 64}, 64, "stages.3"),  # last stage's output is NCHW
    ("vit_tiny_patch16_224", {"img_size": 32}, 32, "blocks.11.norm1"),  # 2x2 token grid, CLS dropped
]


@pytest.mark.parametrize("arch,kwargs,side,layer", ARCHS, ids=[a[0] for a in ARCHS])
def test_shapes_and_range_for_timm_models(arch, kwargs, side, layer):
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=5, **kwargs).eval()
    assert resolve_target_layer(model) == layer
    with GradCAM(model, None) as cam:
        maps, logits = cam(torch.randn(2, 3, side, side), classes=[1, 3])
    assert maps.shape == (2, side, side) and maps.dtype == np.float32
    assert logits.shape == (2, 5)
    assert np.all(np.isfinite(maps)) and maps.min() >= 0.0 and maps.max() <= 1.0
    assert all(m.max() in (0.0, 1.0) for m in maps)  # normalised per image (or empty)
    assert not model.get_submodule(layer)._forward_hooks  # hooks removed on exit


def test_auto_target_layer_is_the_last_spatial_map_of_a_custom_cnn():
    assert auto_target_layer(_tiny_cnn()) == "3"  # the second ReLU, not the 1x1 pool after it
    assert resolve_target_layer(_tiny_cnn()) == "3"


@pytest.mark.parametrize("name,expected", [
    ("2", "2"),
    ("conv", TargetLayerError),
    ("", "3"),  # empty -> automatic
])
def test_target_layer_override(name, expected):
    model = _tiny_cnn()
    if isinstance(expected, type):
        with pytest.raises(expected, match="close names"):
            resolve_target_layer(model, name)
    else:
        assert resolve_target_layer(model, name) == expected


def test_unknown_layer_lists_close_names():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=3)
    with pytest.raises(TargetLayerError, match="conv_head"):
        resolve_target_layer(model, "conv_hed")


def test_model_without_any_feature_map_is_a_clear_error():
    with pytest.raises(TargetLayerError, match="--target-layer"):
        auto_target_layer(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)), input_size=8)


def _scenes(rng: np.random.Generator, n: int, present: np.ndarray, x0: np.ndarray | None = None,
            side: int = 32, obj: int = 6) -> torch.Tensor:
    """Dark noisy images; where ``present``, a bright obj x obj square (left edge ``x0`` or random)."""
    img = rng.uniform(0.0, 0.25, size=(n, 1, side, side)).astype(np.float32)
    for i in np.flatnonzero(present):
        x = int(x0[i]) if x0 is not None else int(rng.integers(0, side - obj))
        y = int(rng.integers(0, side - obj))
        img[i, 0, y:y + obj, x:x + obj] = rng.uniform(0.8, 1.0)
    return torch.from_numpy(img)


@pytest.fixture(scope="module")
def object_detector() -> nn.Module:
    """A tiny CNN trained for 60 Adam steps: class 1 = a bright square is present, 0 = only
    noise. Adam is written out: torch.optim's first step costs seconds of lazy imports."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the function-scoped autouse one
    model = _tiny_cnn(in_ch=1)
    params = list(model.parameters())
    m1, m2 = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    for step in range(1, 61):
        y = rng.integers(0, 2, size=32)
        loss = nn.functional.cross_entropy(model(_scenes(rng, 32, y.astype(bool))), torch.from_numpy(y))
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, a, b, g in zip(params, m1, m2, grads):
                a.mul_(0.9).add_(0.1 * g)
                b.mul_(0.999).add_(0.001 * g * g)
                p.sub_(0.02 * (a / (1 - 0.9 ** step)) / ((b / (1 - 0.999 ** step)).sqrt() + 1e-8))
    torch.set_num_threads(old_threads)
    return model.eval()


def test_detector_learned_the_task(object_detector):
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(32, bool), np.ones(32, bool)]
    with torch.no_grad():
        acc = (object_detector(_scenes(rng, 64, y)).argmax(1).numpy() == y).mean()
    assert acc >= 0.9


@pytest.mark.parametrize("x0,side", [(2, "left"), (5, "left"), (21, "right"), (24, "right")])
def test_heatmap_follows_the_object(object_detector, x0, side):
    rng = np.random.default_rng(2)
    x = _scenes(rng, 4, np.ones(4, bool), x0=np.full(4, x0))
    with GradCAM(object_detector, None) as cam:
        maps, _ = cam(x, classes=[1] * 4)
    for m in maps:
        cx, _ = mass_centre(m)
        assert (cx < 0.5) if side == "left" else (cx > 0.5), f"mass centre x={cx:.2f}, object on the {side}"
        peak_x = np.unravel_index(np.argmax(m), m.shape)[1]
        assert x0 - 2 <= peak_x <= x0 + 6 + 2  # the hottest pixel is on (or right by) the square


def test_normalise_and_mass_centre():
    maps = np.zeros((2, 4, 6), np.float32)
    maps[0, :, 5] = 3.0
    out = normalise_maps(maps)
    assert out[0].max() == 1.0 and out[1].max() == 0.0  # an all-zero map stays zero
    assert mass_centre(out[0]) == pytest.approx((1.0, 0.5))
    assert mass_centre(out[1]) == (0.5, 0.5)


def test_overlay_keeps_the_image_size_and_type():
    rgb = np.full((30, 50, 3), 128, np.uint8)
    out = overlay(rgb, np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4))
    assert out.shape == rgb.shape and out.dtype == np.uint8 and not np.array_equal(out, rgb)
