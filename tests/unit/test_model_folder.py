"""Model folders: model.json validation, round trip, fp16 storage, sha256 checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from ewaste_stream.model import ModelInfo, ModelLoadError, create_model, load_model_info, load_torch_model
from ewaste_stream.model import save_model_folder, write_model_info
from ewaste_stream.model.small_cnn import tiny_model_folder

torch.set_num_threads(1)
BASE = {"name": "m", "arch": "ewaste_small_cnn", "class_names": ("a", "b", "c")}


@pytest.mark.parametrize("override, error", [
    ({}, None),
    ({"class_names": ("a", "a")}, ValidationError),
    ({"class_names": ("a",)}, ValidationError),
    ({"class_names": ("a", "")}, ValidationError),
    ({"std": (0.2, 0.0, 0.2)}, ValidationError),
    ({"temperature": 0.0}, ValidationError),
    ({"input_size": 8}, ValidationError),
    ({"interpolation": "cubic"}, ValidationError),
    ({"weights": {"tflite": "m.tflite"}}, ValidationError),
    ({"weights": {"onnx": "../m.onnx"}}, ValidationError),
    ({"weights_dtype": "int8"}, ValidationError),
    ({"colour": "blue"}, ValidationError),  # unknown keys are rejected
    ({"temperature": 1.7, "weights": {"onnx": "x.onnx"}}, None),
])
def test_model_info_validation(override, error):
    if error is None:
        info = ModelInfo(**{**BASE, **override})
        assert info.num_classes == len(info.class_names)
    else:
        with pytest.raises(error):
            ModelInfo(**{**BASE, **override})


def test_fingerprint_tracks_what_changes_outputs():
    a = ModelInfo(**BASE)
    assert a.fingerprint() == ModelInfo(**BASE, metrics={"acc": 1}).fingerprint()
    assert a.fingerprint() != ModelInfo(**BASE, temperature=2.0).fingerprint()
    assert a.fingerprint() != ModelInfo(**BASE, sha256={"onnx": "00"}).fingerprint()


def test_for_model_takes_preprocessing_from_timm_cfg():
    m = create_model("tf_efficientnet_lite0", 3)
    info = ModelInfo.for_model(m, "x", ("a", "b", "c"))
    assert (info.arch, info.mean, info.interpolation, info.input_size) == (
        "tf_efficientnet_lite0", (0.5, 0.5, 0.5), "bicubic", 224)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip(tmp_path, dtype):
    torch.manual_seed(0)
    model = create_model("ewaste_small_cnn", 4, widths=(8, 8, 16, 16))
    info = ModelInfo.for_model(model, "rt", ("a", "b", "c", "d"), input_size=32, weights_dtype=dtype,
                               arch_kwargs={"widths": [8, 8, 16, 16]}, metrics={"val_accuracy": 0.5})
    out = save_model_folder(tmp_path / "m", model, info, export_onnx=False)
    loaded, info2 = load_torch_model(out)
    same = {"weights", "sha256", "created"}
    assert info2.model_dump(exclude=same) == info.model_dump(exclude=same)
    assert set(info2.weights) == {"safetensors"} and len(info2.sha256["safetensors"]) == 64 and info2.created
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    from safetensors import safe_open
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        stored = f.get_tensor("classifier.weight")
    assert str(stored.dtype) == f"torch.{dtype}"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref, got = model.eval()(x), loaded(x)
    tol = 0 if dtype == "float32" else 5e-2
    assert torch.allclose(ref, got, atol=tol, rtol=0)
    with torch.no_grad():  # the caller's model was not rounded
        assert torch.equal(model(x), ref)


def test_save_refuses_class_count_mismatch(tmp_path):
    model = create_model("ewaste_small_cnn", 4, widths=(8, 8, 8, 8))
    info = ModelInfo.for_model(model, "x", ("a", "b", "c"), input_size=32)
    with pytest.raises(ModelLoadError, match="3 class names"):
        save_model_folder(tmp_path, model, info, export_onnx=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "m", export_onnx=False)


def _copy(folder, tmp_path):
    import shutil

    return shutil.copytree(folder, tmp_path / "copy")


def _flip_byte(path, offset=-100):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, match", [
    (lambda d: _flip_byte(d / "model.safetensors"), r"model\.safetensors: sha256 mismatch"),
    (lambda d: _truncate(d / "model.safetensors"), r"model\.safetensors: sha256 mismatch"),
    (lambda d: (d / "model.safetensors").unlink(), r"model\.safetensors: weights file listed .* missing"),
    (lambda d: (d / "model.json").unlink(), r"model\.json: missing"),
    (lambda d: (d / "model.json").write_text("{not json"), r"model\.json: not valid JSON"),
    (lambda d: (d / "model.json").write_text("[1, 2]"), r"model\.json: must hold a JSON object"),
    (lambda d: _edit_json(d, temperature=-1), r"model\.json: invalid model description\n  temperature"),
    (lambda d: _edit_json(d, class_names=["a", "b"]), r"model\.safetensors: weights do not fit .*shape mismatch"),
])
def test_damaged_folder_errors_name_the_file(folder, tmp_path, damage, match):
    d = _copy(folder, tmp_path)
    damage(d)
    with pytest.raises(ModelLoadError, match=match):
        load_torch_model(d)


def _edit_json(d, **changes):
    data = json.loads((d / "model.json").read_text())
    (d / "model.json").write_text(json.dumps({**data, **changes}))


def test_missing_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        load_model_info(tmp_path / "nope")


def test_write_model_info_updates_temperature(folder, tmp_path):
    d = _copy(folder, tmp_path)
    info = load_model_info(d)
    write_model_info(d, info.model_copy(update={"temperature": 1.5}))
    assert load_model_info(d).temperature == 1.5
    assert not list(d.glob("*.tmp"))
    model, _ = load_torch_model(d)  # weights untouched, still verify
    assert np.isfinite(next(model.parameters()).detach().numpy()).all()
