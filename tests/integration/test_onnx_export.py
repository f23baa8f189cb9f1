"""ONNX export: dynamic batch, verification against torch, the export command."""

from __future__ import annotations

import json
import re

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ewaste_stream import CLASS_NAMES
from ewaste_stream.cli import main
from ewaste_stream.model import create_model, load_classifier, load_model_info, load_torch_model
from ewaste_stream.model.onnx_export import (ModelExportError, export_folder_onnx, export_onnx,
                                              fold_pads_into_convs, verify_onnx)
from ewaste_stream.model.small_cnn import tiny_model_folder

torch.set_num_threads(1)


@pytest.fixture()
def no_onnx_folder(tmp_path):
    return tiny_model_folder(tmp_path / "m", export_onnx=False, weights_dtype="float16")


def test_export_folder_adds_verified_onnx(no_onnx_folder):
    assert "onnx" not in load_model_info(no_onnx_folder).weights
    path = export_folder_onnx(no_onnx_folder)
    info = load_model_info(no_onnx_folder)
    assert info.weights["onnx"] == path.name and len(info.sha256["onnx"]) == 64
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model, _ = load_torch_model(no_onnx_folder)
    for batch in (1, 5):  # dynamic batch axis
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        got = sess.run(None, {"input": x})[0]
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy()
        assert got.shape == (batch, 10)
        assert np.abs(got - ref).max() < 1e-4


def test_verify_catches_a_wrong_file(tmp_path):
    torch.manual_seed(0)
    a = create_model("ewaste_small_cnn", 3, widths=(8, 8, 8, 8))
    b = create_model("ewaste_small_cnn", 3, widths=(8, 8, 8, 8))
    export_onnx(a, tmp_path / "a.onnx", 32)
    with pytest.raises(ModelExportError, match="differs from torch"):
        verify_onnx(tmp_path / "a.onnx", b, 32)


def _ops(path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _same_padding_net() -> torch.nn.Module:
    """Two TensorFlow-style "same" strided convolutions (timm's Conv2dSame: pad amounts from the
    input's shape at run time, asymmetric on an odd size), as in the tf_efficientnet models."""
    from timm.layers import create_conv2d

    torch.manual_seed(0)
    return torch.nn.Sequential(create_conv2d(3, 8, 3, stride=2, padding="same"), torch.nn.ReLU6(),
                               create_conv2d(8, 8, 5, stride=2, padding="same"), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()


def test_export_folds_same_padding_into_the_convolutions(tmp_path):
    net, x = _same_padding_net(), torch.randn(4, 3, 37, 37)
    export_onnx(net, tmp_path / "plain.onnx", 37, fold_pads=False)
    assert _ops(tmp_path / "plain.onnx").count("Pad") == 2  # what the exporter writes
    export_onnx(net, tmp_path / "folded.onnx", 37)  # verified against torch inside
    ops = _ops(tmp_path / "folded.onnx")
    assert "Pad" not in ops and "Shape" not in ops and ops.count("Conv") == 2
    with torch.inference_mode():
        ref = net(x).numpy()
    for path in ("plain.onnx", "folded.onnx"):
        sess = ort.InferenceSession(str(tmp_path / path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"input": x.numpy()})[0]
        assert np.abs(got - ref).max() < 1e-5


@pytest.mark.parametrize("pad", [torch.nn.ReflectionPad2d(1), torch.nn.ConstantPad2d(1, 0.5)])
def test_fold_leaves_pads_a_convolution_cannot_do(tmp_path, pad):
    torch.manual_seed(0)
    net = torch.nn.Sequential(pad, torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    export_onnx(net, tmp_path / "m.onnx", 8)
    assert "Pad" in _ops(tmp_path / "m.onnx")
    assert fold_pads_into_convs(tmp_path / "m.onnx", 8) == 0


def test_fold_leaves_a_zero_pad_that_feeds_something_else(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.ZeroPad2d((0, 1, 0, 1)), torch.nn.MaxPool2d(2), torch.nn.Conv2d(3, 4, 3),
                              torch.nn.Flatten()).eval()
    export_onnx(net, tmp_path / "m.onnx", 9)
    assert _ops(tmp_path / "m.onnx").count("Pad") == 1


def test_export_fixes_the_amounts_of_a_pad_it_cannot_fold(tmp_path):
    """TensorFlow-style "same" average pooling (timm's AvgPool2dSame, as in MaxViT's downsampling)
    keeps its Pad, but with constant amounts: no shape arithmetic is left for a quantizer to touch."""
    from timm.layers import create_conv2d, create_pool2d

    from ewaste_stream.model.quantize import computed_pads

    torch.manual_seed(0)
    net = torch.nn.Sequential(create_conv2d(3, 8, 3, stride=2, padding="same"),
                              create_pool2d("avg", 3, stride=2, padding="same"), torch.nn.Flatten()).eval()
    export_onnx(net, tmp_path / "plain.onnx", 33, fold_pads=False)
    assert computed_pads(tmp_path / "plain.onnx") == 2
    export_onnx(net, tmp_path / "fixed.onnx", 33)  # verified against torch inside
    ops = _ops(tmp_path / "fixed.onnx")
    assert ops.count("Pad") == 1 and "Shape" not in ops and computed_pads(tmp_path / "fixed.onnx") == 0


def test_export_command_on_folder(no_onnx_folder, capsys):
    assert main(["export", str(no_onnx_folder), "--format", "onnx"]) == 0
    assert capsys.readouterr().out.strip().endswith("model.onnx")
    assert "onnx" in load_model_info(no_onnx_folder).weights


def test_export_command_imports_bare_state_dict(tmp_path, capsys):
    torch.manual_seed(0)
    src = create_model("ewaste_small_cnn", len(CLASS_NAMES))
    torch.save(src.state_dict(), tmp_path / "best_model.pth")
    out = tmp_path / "imported"
    rc = main(["export", str(tmp_path / "best_model.pth"), "--arch", "ewaste_small_cnn", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    info = json.loads((out / "model.json").read_text())
    assert info["class_names"] == list(CLASS_NAMES) and info["data"]["imported_from"] == "best_model.pth"
    crops = [np.full((224, 224, 3), 90, np.uint8)]
    x = load_classifier(out, backend="onnx", threads=1).predict(crops)
    with torch.inference_mode():
        from ewaste_stream.model import preprocess
        ref = src.eval()(torch.from_numpy(preprocess(crops, load_model_info(out)))).softmax(1).numpy()
    assert np.abs(x - ref).max() < 1e-4


@pytest.mark.parametrize("argv, match", [
    (["--arch", "ewaste_small_cnn", "--classes", "a,b,c", "--out", "x"], r"best_model\.pth: weights do not fit"),
    (["--out", "x"], "give --arch and --out"),
    (["--arch", "nope_net", "--out", "x"], "unknown architecture"),
])
def test_export_command_bad_checkpoint_usage(tmp_path, capsys, argv, match):
    torch.save(create_model("ewaste_small_cnn", len(CLASS_NAMES)).state_dict(), tmp_path / "best_model.pth")
    argv = [a.replace("x", str(tmp_path / "x")) if a == "x" else a for a in argv]
    assert main(["export", str(tmp_path / "best_model.pth"), *argv]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert "Traceback" not in err


def test_export_command_missing_source(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing")]) == 2
    assert "no such model folder" in capsys.readouterr().err
