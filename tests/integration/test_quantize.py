"""int8 ONNX graph for the CPU: made and checked by `ewaste-stream export --format onnx-int8`,
chosen by model.precision, given its own temperature, refused when stale, broken or too far
from fp32, and dropped when model.onnx is re-exported."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ewaste_stream.cli import main
from ewaste_stream.model import ModelLoadError, load_classifier, load_model_info
from ewaste_stream.model.onnx_export import export_onnx
from ewaste_stream.model.small_cnn import tiny_model_folder

CLASSES = ("Battery", "Keyboard")


def _image(label: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(120, 256, (5, 5, 3), dtype=np.uint8), (150, 150), interpolation=cv2.INTER_CUBIC)
    c = (int(rng.integers(50, 100)), int(rng.integers(50, 100)))
    colour = (200, 30, 30) if label == 0 else (30, 30, 200)
    cv2.circle(img, c, int(rng.integers(22, 36)), colour, -1)
    return img


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib") / "train"
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(8):
            cv2.imwrite(str(root / name / f"{name}_{i}.jpg"), _image(label, 10 * i + label)[..., ::-1])
    return root


@pytest.fixture()
def folder(tmp_path):
    return tiny_model_folder(tmp_path / "m", class_names=CLASSES, input_size=32, temperature=0.8)


def _quantize(folder, train_dir, *extra: str) -> int:
    return main(["export", str(folder), "--format", "onnx-int8", "--calib", str(train_dir),
                 "--calib-per-class", "8", *extra])


def _crops(n: int = 12) -> list[np.ndarray]:
    return [_image(i % 2, 1000 + i) for i in range(n)]


def test_int8_graph_is_recorded_checked_and_run_by_default(folder, train_dir):
    assert _quantize(folder, train_dir, "--min-agreement", "0") == 0
    info = load_model_info(folder)
    assert info.weights["onnx_int8"] == "model.int8.onnx" and len(info.sha256["onnx_int8"]) == 64
    report = info.metrics["int8"]
    assert report["from_onnx_sha256"] == info.sha256["onnx"]
    assert report["calibration_crops"] == report["check_crops"] == 16  # 8 photos x (photo + belt crop), halved
    assert 0.0 <= report["top1_agreement"] <= 1.0 and info.int8_temperature > 0
    auto = load_classifier(folder, device="cpu", threads=1)
    fp32 = load_classifier(folder, device="cpu", threads=1, precision="fp32")
    assert (auto.precision, fp32.precision) == ("int8", "fp32")
    assert auto.temperature == info.int8_temperature and fp32.temperature == 0.8
    p8, p32 = auto.predict(_crops()), fp32.predict(_crops())
    assert p8.shape == p32.shape == (12, 2) and np.allclose(p8.sum(1), 1, atol=1e-5)
    assert not np.array_equal(p8, p32)  # another graph really runs
    assert np.abs(p8 - p32).max() < 0.25  # ... and approximates fp32


def test_int8_graph_too_far_from_fp32_is_not_written(folder, train_dir, capsys):
    assert _quantize(folder, train_dir, "--min-agreement", "1.01") == 1  # no graph agrees on more than 100 %
    assert "agrees with fp32 on only" in capsys.readouterr().err
    assert "onnx_int8" not in load_model_info(folder).weights
    assert not (folder / "model.int8.onnx").exists()


def test_precision_int8_without_a_graph_says_how_to_make_one(folder):
    with pytest.raises(ModelLoadError, match=r"model\.json: model\.precision int8 .*--format onnx-int8"):
        load_classifier(folder, device="cpu", precision="int8")
    with pytest.raises(ModelLoadError, match="ONNX Runtime int8 graph"):
        load_classifier(folder, backend="torch", device="cpu", precision="int8")
    assert load_classifier(folder, device="cpu", threads=1).precision == "fp32"  # auto: fp32 when there is none


def test_stale_or_corrupt_int8_graph(folder, train_dir):
    assert _quantize(folder, train_dir, "--min-agreement", "0") == 0
    mj = folder / "model.json"
    d = json.loads(mj.read_text())
    d["metrics"]["int8"]["from_onnx_sha256"] = "0" * 64  # made from another model.onnx
    mj.write_text(json.dumps(d))
    assert load_classifier(folder, device="cpu", threads=1).precision == "fp32"  # auto falls back
    with pytest.raises(ModelLoadError, match="made from another model.onnx"):
        load_classifier(folder, device="cpu", precision="int8")
    with open(folder / "model.int8.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"garbage")
    d["metrics"]["int8"]["from_onnx_sha256"] = d["sha256"]["onnx"]
    mj.write_text(json.dumps(d))
    with pytest.raises(ModelLoadError, match=r"model\.int8\.onnx: sha256 mismatch"):
        load_classifier(folder, device="cpu")


def test_reexporting_fp32_drops_the_stale_int8_graph(folder, train_dir):
    assert _quantize(folder, train_dir, "--min-agreement", "0") == 0
    assert main(["export", str(folder), "--format", "onnx"]) == 0
    info = load_model_info(folder)
    assert "onnx_int8" not in info.weights and "onnx_int8" not in info.sha256
    assert "int8" not in info.metrics and info.int8_temperature is None
    assert not (folder / "model.int8.onnx").exists()


def test_export_int8_needs_an_fp32_graph_first(tmp_path, train_dir, capsys):
    bare = tiny_model_folder(tmp_path / "bare", class_names=CLASSES, export_onnx=False)
    assert _quantize(bare, train_dir) == 2
    assert "--format onnx` first" in capsys.readouterr().err


def test_export_int8_needs_calibration_data(folder, capsys):
    assert main(["export", str(folder), "--format", "onnx-int8"]) == 2
    assert "--calib TRAIN_DIR" in capsys.readouterr().err
    assert main(["export", str(folder), "--format", "onnx-int8", "--calib", "/nonexistent/train"]) == 2
    assert "/nonexistent/train" in capsys.readouterr().err


def test_int8_graph_of_a_same_padding_net_pads_as_fp32(folder, train_dir):
    """A model.onnx exported with pad amounts computed at run time (TensorFlow-style "same"
    padding, as timm's tf_efficientnet models; exports before pads were folded): quantized as it
    is, the quantizer also quantized that arithmetic and padded the 5x5 convolution [0, 2] instead of
    [1, 2] (the shipped int8 graph of 2026-11-28 had three such pads). The int8 graph now pads
    inside its convolutions, by the amounts of the fp32 graph."""
    import onnx
    import torch
    from timm.layers import create_conv2d

    from ewaste_stream.model.weights import sha256_file

    torch.manual_seed(0)
    net = torch.nn.Sequential(create_conv2d(3, 8, 3, stride=2, padding="same"), torch.nn.ReLU6(),
                              create_conv2d(8, 8, 5, stride=2, padding="same"), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, len(CLASSES))).eval()
    export_onnx(net, folder / "model.onnx", 32, fold_pads=False)  # as exported before pads were folded
    assert [n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node].count("Pad") == 2
    mj = folder / "model.json"
    d = json.loads(mj.read_text())
    d["sha256"]["onnx"] = sha256_file(folder / "model.onnx")
    mj.write_text(json.dumps(d))

    assert _quantize(folder, train_dir, "--min-agreement", "0", "--float-convs", "0") == 0  # both convolutions int8
    assert _conv_weights_quantized(folder / "model.int8.onnx") == [True, True]
    graph = onnx.load(str(folder / "model.int8.onnx")).graph
    assert not [n for n in graph.node if n.op_type in ("Pad", "Shape")]
    pads = [[a.ints for a in n.attribute if a.name == "pads"][0] for n in graph.node if n.op_type == "Conv"]
    assert [list(p) for p in pads] == [[0, 0, 1, 1], [1, 1, 2, 2]]  # top, left, bottom, right
    x = np.random.default_rng(0).uniform(-1, 1, (6, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).numpy()
    import onnxruntime as ort

    sess = ort.InferenceSession(str(folder / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max() + 0.02


def _warnings_at_load(folder) -> tuple[object, list[str]]:
    from loguru import logger

    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(str(m)), level="WARNING")
    try:
        clf = load_classifier(folder, device="cpu", threads=1)
    finally:
        logger.remove(sink)
    return clf, seen


def test_an_int8_graph_with_computed_pads_is_named_at_load(folder, train_dir, tmp_path):
    """An int8 graph made before pads were folded still loads (it passed its agreement check),
    with a warning that names the file and the command that re-makes it. The count is measured
    when the graph is made and read from model.json at load (no graph parsing at start-up)."""
    import torch
    from timm.layers import create_conv2d

    from ewaste_stream.model.quantize import computed_pads

    assert _quantize(folder, train_dir, "--min-agreement", "0") == 0
    assert computed_pads(folder / "model.int8.onnx") == 0
    assert load_model_info(folder).metrics["int8"]["computed_pads"] == 0
    clf, seen = _warnings_at_load(folder)
    assert clf.precision == "int8" and not [m for m in seen if "pad amounts" in m], seen
    torch.manual_seed(0)
    net = torch.nn.Sequential(create_conv2d(3, 4, 3, stride=2, padding="same"), torch.nn.Flatten()).eval()
    plain = tmp_path / "plain.onnx"
    export_onnx(net, plain, 32, fold_pads=False)
    assert computed_pads(plain) == 1

    mj = folder / "model.json"
    d = json.loads(mj.read_text())
    d["metrics"]["int8"]["computed_pads"] = 3  # as the graph of 2026-11-28 had
    mj.write_text(json.dumps(d))
    clf, seen = _warnings_at_load(folder)
    assert clf.precision == "int8"
    assert any("model.int8.onnx" in m and "3 pad amounts" in m and "--format onnx-int8" in m for m in seen), seen

    del d["metrics"]["int8"]["computed_pads"]  # made before the count was recorded
    mj.write_text(json.dumps(d))
    clf, seen = _warnings_at_load(folder)
    assert clf.precision == "int8"
    assert any("model.int8.onnx" in m and "metrics.int8.computed_pads" in m and "--format onnx-int8" in m
               for m in seen), seen


def _conv_weights_quantized(path) -> list[bool]:
    """Per convolution of a graph, in order: is its weight int8 (made by a DequantizeLinear)?"""
    import onnx

    graph = onnx.load(str(path)).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    return [made_by.get(node.input[1]) == "DequantizeLinear" for node in graph.node if node.op_type == "Conv"]


@pytest.mark.parametrize("float_convs", [0, 1, 2])
def test_the_first_convolutions_stay_float(folder, train_dir, float_convs):
    assert _quantize(folder, train_dir, "--min-agreement", "0", "--float-convs", str(float_convs)) == 0
    quantized = _conv_weights_quantized(folder / "model.int8.onnx")
    assert len(quantized) > 2
    assert quantized == [False] * float_convs + [True] * (len(quantized) - float_convs)
    report = load_model_info(folder).metrics["int8"]
    assert report["float_convs"] == float_convs
    assert sum("Conv" in name for name in report["float_nodes"]) == float_convs


def test_float_convs_default_and_bounds(folder, train_dir, capsys):
    from ewaste_stream.model.quantize import FLOAT_CONVS

    assert _quantize(folder, train_dir, "--min-agreement", "0") == 0
    assert load_model_info(folder).metrics["int8"]["float_convs"] == FLOAT_CONVS
    assert _quantize(folder, train_dir, "--float-convs", "-1") == 2
    assert "--float-convs must be >= 0" in capsys.readouterr().err


def test_export_help_states_the_float_convs_default():
    """The help is built without importing the quantizer (onnxruntime, torch): it names the default
    as text, so this keeps the two from drifting apart."""
    from ewaste_stream.cli import build_parser
    from ewaste_stream.model.quantize import FLOAT_CONVS

    export = build_parser()._subparsers._group_actions[0].choices["export"]  # type: ignore[union-attr]
    action = next(a for a in export._actions if "--float-convs" in a.option_strings)
    assert f"(default {FLOAT_CONVS};" in action.help
