"""ewaste-stream predict: good and bad inputs, text and JSON output, exit codes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from ewaste_stream import CLASS_NAMES
from ewaste_stream.cli import main
from ewaste_stream.config import DEFAULT_MODEL_DIR
from ewaste_stream.model.small_cnn import tiny_model_folder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("predict") / "m")


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    cv2.imwrite(str(root / "a.jpg"), rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "sub" / "b.png"), rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "sub" / "gray.png"), rng.integers(0, 256, (30, 30), dtype=np.uint8))
    (root / "notes.txt").write_text("not an image, and not an image extension: skipped in folders")
    return root


def _json_lines(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_predict_folder_json(model_dir, images, capsys):
    assert main(["predict", str(images), "--model", str(model_dir), "--json", "--threads", "1"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["a.jpg", "b.png", "gray.png"]
    for r in rows:
        assert r["label"] in CLASS_NAMES and len(r["top"]) == 3
        assert r["top"][0] == [r["label"], r["confidence"]]
        probs = [p for _, p in r["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_predict_bad_files_reported_and_rest_continue(model_dir, images, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes((images / "a.jpg").read_bytes()[:40])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.jpg"
    argv = ["predict", str(corrupt), str(images / "a.jpg"), str(empty), str(missing), str(tmp_path / "imgs" / "sub"),
            "--model", str(model_dir), "--json", "--batch", "2", "--threads", "1"]
    assert main(argv) == 1
    cap = capsys.readouterr()
    rows = _json_lines(cap.out)
    assert [("error" in r) for r in rows] == [True, False, True, True, False, False]
    assert rows[0]["path"] == str(corrupt) and "decodable" in rows[0]["error"]
    assert rows[2]["error"] == "empty file" and "no such file" in rows[3]["error"]
    for bad in (corrupt, empty, missing):
        assert f"{bad}: error:" in cap.err
    assert "3 file(s) could not be classified" in cap.err


def test_predict_text_lines(model_dir, images, capsys):
    assert main(["predict", str(images / "a.jpg"), "--model", str(model_dir), "--top", "2", "--threads", "1"]) == 0
    line, = capsys.readouterr().out.strip().splitlines()
    path, label, conf, tops = line.split("\t")
    assert path.endswith("a.jpg") and label in CLASS_NAMES and 0 < float(conf) <= 1
    assert tops.startswith(f"top: {label} ") and tops.count(",") == 1


@pytest.mark.parametrize("argv, code, match", [
    (["--model", "/nonexistent/model"], 2, "model folder not found"),
    (["--batch", "0"], 2, "must be >= 1"),
])
def test_predict_usage_errors(images, capsys, argv, code, match):
    assert main(["predict", str(images), *argv]) == code
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_predict_empty_folder_fails(model_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "--model", str(model_dir)]) == 1
    assert "no image files" in capsys.readouterr().err


def test_predict_default_model(images, capsys):
    if not (DEFAULT_MODEL_DIR / "model.json").is_file():
        pytest.skip("no shipped model in models/default")
    assert main(["predict", str(images / "a.jpg"), "--json", "--threads", "1"]) == 0
    row, = _json_lines(capsys.readouterr().out)
    assert row["label"] in CLASS_NAMES
