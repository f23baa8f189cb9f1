"""create_model: the supported architectures, offline Lite0 weights, local weight files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ewaste_stream.model import SUPPORTED_ARCHS, ModelInfo, ModelLoadError, create_model, preprocess
from ewaste_stream.model.factory import load_offline_lite0

torch.set_num_threads(1)


@pytest.mark.parametrize("arch", [a for a in SUPPORTED_ARCHS if a != "maxvit_tiny_tf_224"])
def test_supported_archs_build_with_our_head(arch):
    m = create_model(arch, 10)
    assert m.get_classifier().out_features == 10
    assert not m.training


@pytest.mark.slow
def test_maxvit_random_weights_forward():
    m = create_model("maxvit_tiny_tf_224", 10)
    info = ModelInfo.for_model(m, "mx", [str(i) for i in range(10)])
    assert info.input_size == 224
    with torch.inference_mode():
        out = m(torch.from_numpy(preprocess([np.zeros((100, 120, 3), np.uint8)], info)))
    assert out.shape == (1, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("call, error, match", [
    (lambda: create_model("resnet_does_not_exist", 10), ModelLoadError, "unknown architecture"),
    (lambda: create_model("ewaste_small_cnn", 0), ValueError, "num_classes"),
    (lambda: create_model("convnext_tiny", 10, pretrained="lite0-offline"), ModelLoadError,
     "tf_efficientnet_lite0 only"),
    (lambda: create_model("ewaste_small_cnn", 10, pretrained="/nonexistent/w.pth"), ModelLoadError,
     "w.pth: weights file not found"),
])
def test_factory_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_hub_failure_becomes_model_load_error(monkeypatch):
    import timm

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ModelLoadError, match="lite0-offline"):
        create_model("ewaste_small_cnn", 10, pretrained="timm")


@pytest.fixture(scope="module")
def lite0_imagenet():
    return create_model("tf_efficientnet_lite0", 1000, pretrained="lite0-offline")


def test_offline_lite0_classifies_a_cat(lite0_imagenet):
    from skimage import data
    from timm.data import ImageNetInfo

    info = ModelInfo.for_model(lite0_imagenet, "in1k", [str(i) for i in range(1000)])
    with torch.inference_mode():
        probs = lite0_imagenet(torch.from_numpy(preprocess([data.chelsea()], info))).softmax(1)[0]
    names = ImageNetInfo()
    top5 = [names.index_to_description(int(i)) for i in probs.topk(5).indices]
    assert any("cat" in n.lower() for n in top5), top5


def test_offline_lite0_head_is_reset_for_our_classes(lite0_imagenet):
    m = create_model("tf_efficientnet_lite0", 10, pretrained="lite0-offline")
    assert m.get_classifier().out_features == 10
    assert torch.equal(m.conv_stem.weight, lite0_imagenet.conv_stem.weight)


def test_offline_lite0_checks_shapes(tmp_path, lite0_imagenet):
    sd = dict(lite0_imagenet.state_dict())
    bad = {k: (torch.zeros(3, 3) if i == 5 else v) for i, (k, v) in enumerate(sd.items())}
    torch.save(bad, tmp_path / "bad.pth")
    target = create_model("tf_efficientnet_lite0", 1000)
    with pytest.raises(ModelLoadError, match=r"bad\.pth: tensor #5 .* does not fit"):
        load_offline_lite0(target, tmp_path / "bad.pth")
    torch.save(dict(list(sd.items())[:10]), tmp_path / "short.pth")
    with pytest.raises(ModelLoadError, match=r"short\.pth: holds 10 tensors"):
        load_offline_lite0(target, tmp_path / "short.pth")


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_local_weights_file(tmp_path, fmt):
    torch.manual_seed(1)
    src = create_model("ewaste_small_cnn", 5, widths=(8, 8, 8, 8))
    path = tmp_path / f"w.{fmt}"
    if fmt == "pth":
        torch.save(src.state_dict(), path)
    else:
        save_file(src.state_dict(), str(path))
    same = create_model("ewaste_small_cnn", 5, pretrained=path, widths=(8, 8, 8, 8))
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), same.state_dict().values()))
    other_head = create_model("ewaste_small_cnn", 3, pretrained=str(path), widths=(8, 8, 8, 8))
    assert other_head.get_classifier().out_features == 3
    assert torch.equal(other_head.stem[0].weight, src.stem[0].weight)
