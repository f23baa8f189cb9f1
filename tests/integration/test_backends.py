"""ONNX Runtime and torch backends: parity, calibration, backend selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ewaste_stream.config import DEFAULT_MODEL_DIR, REPO_ROOT
from ewaste_stream.model import ModelLoadError, load_classifier, load_model_info, write_model_info
from ewaste_stream.model.backends import OrtClassifier, TorchClassifier, calibrated_softmax
from ewaste_stream.model.base import Classifier
from ewaste_stream.model.small_cnn import tiny_model_folder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("backends")
    return {dtype: tiny_model_folder(root / dtype, weights_dtype=dtype, temperature=1.3)
            for dtype in ("float32", "float16")}


def _crops(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(10, 80)), int(rng.integers(10, 80)), 3), dtype=np.uint8)
            for _ in range(n)]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_backend_parity_cpu(folders, dtype, channels_last):
    crops = _crops(6)
    ort_ = load_classifier(folders[dtype], backend="onnx", device="cpu", threads=1)
    tch = load_classifier(folders[dtype], backend="torch", device="cpu", threads=1, channels_last=channels_last)
    a, b = ort_.predict(crops), tch.predict(crops)
    assert a.shape == (6, 10) and a.dtype == np.float32 and b.dtype == np.float32
    assert np.abs(a - b).max() < 1e-4
    np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-5)
    assert ort_.sha256 == tch.sha256 and ort_.name == tch.name == "tiny-test-cnn"


def test_shipped_model_parity_cpu():
    if not (DEFAULT_MODEL_DIR / "model.json").is_file():
        pytest.skip("no shipped model in models/default")
    from skimage import data

    crops = [data.chelsea(), data.coffee()[:200, :300], np.full((150, 150, 3), 255, np.uint8)]
    a = load_classifier(DEFAULT_MODEL_DIR, backend="onnx", device="cpu", threads=1, precision="fp32").predict(crops)
    b = load_classifier(DEFAULT_MODEL_DIR, backend="torch", device="cpu", threads=1).predict(crops)
    assert np.abs(a - b).max() < 1e-4
    if "onnx_int8" in load_model_info(DEFAULT_MODEL_DIR).weights:  # what the CPU runs by default
        q = load_classifier(DEFAULT_MODEL_DIR, device="cpu", threads=1)
        assert q.precision == "int8"  # current (made from this model.onnx), so auto takes it
        assert load_model_info(DEFAULT_MODEL_DIR).metrics["int8"]["top1_agreement"] >= 0.95
        # in-domain crops (the sample video's items at the line and 3 earlier frames, 6 apart: 230 crops): the int8
        # graph computes what fp32 computes, up to quantization. Measured: top-1 agreement 88.3 % and a mean largest
        # probability difference of 0.094 for the graph shipped 2026-12-06, 88.7 % and 0.093 for the head refitted
        # in session 21, 87.8 % and 0.092 for the one refitted on the pipeline's views in session 23, 91.3 % and 0.075
        # for session 24's (its top two block stages tuned on those views too), 95.7 % and 0.044 for the same model
        # with its first three convolutions left in float (session 25; all int8: 91.3 % and 0.075, which fails here
        # now); 83.5 % and 0.129 for the first shipped int8 graph, whose pads were wrong.
        # (Accuracy is not compared; at the line alone, 77 crops, one crop is 1.3 points.)
        from ewaste_stream.training.head_refit import video_views

        crops, _ = video_views(REPO_ROOT / "samples" / "belt_val_demo", q.class_names, frames=4, step=6)
        p8, p32 = q.predict(crops), load_classifier(DEFAULT_MODEL_DIR, device="cpu", threads=1,
                                                    precision="fp32").predict(crops)
        assert len(crops) > 200 and (p8.argmax(1) == p32.argmax(1)).mean() >= 0.93
        assert np.abs(p8 - p32).max(1).mean() < 0.06


def test_temperature_is_applied_in_both_backends(folders, tmp_path):
    import shutil

    d = shutil.copytree(folders["float32"], tmp_path / "t")
    crops = _crops(4, seed=3)
    info = load_model_info(d)
    write_model_info(d, info.model_copy(update={"temperature": 1.0}))
    base = {b: load_classifier(d, backend=b, threads=1).predict(crops) for b in ("onnx", "torch")}
    write_model_info(d, info.model_copy(update={"temperature": 4.0}))
    for backend in ("onnx", "torch"):
        hot = load_classifier(d, backend=backend, threads=1).predict(crops)
        logp1, logp4 = np.log(base[backend]), np.log(hot)
        centred1 = logp1 - logp1.mean(1, keepdims=True)
        centred4 = logp4 - logp4.mean(1, keepdims=True)
        np.testing.assert_allclose(centred4, centred1 / 4.0, atol=1e-4)


@pytest.mark.parametrize("logits, t, expected", [
    ([[0.0, 0.0]], 1.0, [[0.5, 0.5]]),
    ([[np.log(3.0), 0.0]], 1.0, [[0.75, 0.25]]),
    ([[2 * np.log(3.0), 0.0]], 2.0, [[0.75, 0.25]]),
    ([[1000.0, 0.0]], 1.0, [[1.0, 0.0]]),  # no overflow
])
def test_calibrated_softmax(logits, t, expected):
    np.testing.assert_allclose(calibrated_softmax(np.array(logits), t), expected, atol=1e-6)


def test_empty_batch_and_protocol(folders):
    clf = load_classifier(folders["float32"], backend="onnx", threads=1)
    assert isinstance(clf, Classifier)
    assert clf.predict([]).shape == (0, 10)


def test_auto_backend_selection(folders, tmp_path):
    import shutil

    if torch.cuda.is_available():
        pytest.skip("auto picks torch on CUDA machines")
    assert isinstance(load_classifier(folders["float32"], threads=1), OrtClassifier)
    d = shutil.copytree(folders["float32"], tmp_path / "no_onnx")
    info = load_model_info(d)
    write_model_info(d, info.model_copy(update={"weights": {"safetensors": info.weights["safetensors"]}}))
    assert isinstance(load_classifier(d, threads=1), TorchClassifier)
    with pytest.raises(ModelLoadError, match="no onnx weights"):
        load_classifier(d, backend="onnx")


def test_cpu_start_up_does_not_import_torch_without_an_nvidia_driver():
    """On a CPU machine the ONNX model loads without torch (seconds of every replay's start-up)."""
    import subprocess
    import sys

    from ewaste_stream.model.backends import nvidia_driver_present

    if nvidia_driver_present():
        pytest.skip("this machine has an NVIDIA driver: torch is asked whether CUDA works")
    code = ("import sys; from ewaste_stream.model import load_classifier; "
            f"c = load_classifier({str(DEFAULT_MODEL_DIR)!r}); print(type(c).__name__, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.split() == ["OrtClassifier", "False"]


def test_nvidia_driver_check_reads_the_device_nodes(monkeypatch):
    from pathlib import Path

    from ewaste_stream.model import backends

    monkeypatch.setattr(backends.sys, "platform", "linux")
    monkeypatch.setattr(Path, "exists", lambda self: str(self) == "/dev/dxg")  # a WSL GPU
    monkeypatch.setattr(Path, "glob", lambda self, pat: iter(()))
    assert backends.nvidia_driver_present()
    monkeypatch.setattr(Path, "exists", lambda self: False)
    assert not backends.nvidia_driver_present() and not backends.cuda_available()
    monkeypatch.setattr(backends.sys, "platform", "win32")
    assert backends.nvidia_driver_present()  # elsewhere torch is asked


def test_cuda_request_without_cuda_is_clear(folders):
    if torch.cuda.is_available():
        pytest.skip("machine has CUDA")
    with pytest.raises(ModelLoadError, match="cuda"):
        load_classifier(folders["float32"], backend="torch", device="cuda")


@pytest.mark.gpu
def test_torch_cuda_amp_close_to_cpu(folders):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    crops = _crops(8)
    cpu = load_classifier(folders["float32"], backend="onnx", device="cpu", threads=1).predict(crops)
    gpu = load_classifier(folders["float32"], backend="torch", device="cuda", channels_last=True).predict(crops)
    assert np.abs(cpu - gpu).max() < 1e-2
