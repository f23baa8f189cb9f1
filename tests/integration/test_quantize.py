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
