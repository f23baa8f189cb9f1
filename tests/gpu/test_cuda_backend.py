"""CUDA parity tests (marker ``gpu``; skipped with a reason where torch sees no CUDA device).

Run on a GPU machine with ``python -m pytest -m gpu`` (``tools/gpu_check.sh`` does).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from ewaste_stream import CLASS_NAMES
from ewaste_stream.config import load_config
from ewaste_stream.model import ModelInfo, classifier_from_config, load_classifier, preprocess, save_model_folder
from ewaste_stream.model.cuda import AccelOptions, CudaTorchClassifier
from ewaste_stream.model.gpu_preprocess import DevicePreprocessor
from ewaste_stream.model.small_cnn import tiny_model_folder

pytestmark = pytest.mark.gpu
DEV = "cuda"
PRECISIONS = ["fp32", "fp16", "bf16"]


def _crops(n, seed=0, lo=10, hi=300):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(lo, hi)), int(rng.integers(lo, hi)), 3), dtype=np.uint8)
            for _ in range(n)]


def _skip_unsupported(precision):
    if precision == "bf16" and DEV == "cuda" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("gpu") / "tiny", input_size=64, temperature=1.3)


@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory):
    """Random-weight real architectures (as in production), exported with ONNX."""
    from ewaste_stream.model import create_model

    out = {}
    for arch in ("tf_efficientnet_lite0", "maxvit_tiny_tf_224"):
        torch.manual_seed(0)
        model = create_model(arch, len(CLASS_NAMES))
        info = ModelInfo.for_model(model, f"{arch}-random", CLASS_NAMES, arch=arch)
        out[arch] = save_model_folder(tmp_path_factory.mktemp(arch) / arch, model, info, export_onnx=False)
    return out


@pytest.mark.parametrize("interp", ["nearest", "bilinear", "bicubic", "area"])
def test_device_preprocessing_matches_preprocess(interp):
    info = ModelInfo(name="t", arch="a", class_names=CLASS_NAMES, input_size=224, interpolation=interp)
    crops = _crops(17) + [np.zeros((224, 224, 3), np.uint8)]
    ref = preprocess(crops, info)
    prep = DevicePreprocessor(info, DEV)
    for _ in range(2):  # the second call reuses the pinned buffer
        got = prep(crops, pad_to=32)
        assert got.device.type == DEV and tuple(got.shape) == (32, 3, 224, 224)
        diff = np.abs(got[:len(crops)].cpu().numpy() - ref)
        assert diff.max() <= 1.0 / (255 * min(info.std)) + 1e-5  # at most one grey level (OpenCV fixed point)
        assert torch.count_nonzero(got[len(crops):]) == 0


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_tiny_model_cuda_matches_cpu(tiny, precision, channels_last):
    _skip_unsupported(precision)
    crops = _crops(9)
    cpu = load_classifier(tiny, backend="onnx", device="cpu", threads=2).predict(crops)
    clf = load_classifier(tiny, backend="torch", device=DEV,
                          accel=AccelOptions(precision=precision, channels_last=channels_last))
    assert isinstance(clf, CudaTorchClassifier) and clf.precision == precision
    got = clf.predict(crops)
    assert got.shape == cpu.shape and got.dtype == np.float32
    assert np.abs(got - cpu).max() < (5e-3 if precision == "fp32" else 3e-2)


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "maxvit_tiny_tf_224"])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_production_archs_amp_close_to_fp32_cpu(timm_folder, arch, precision):
    """Autocast on the real architectures stays close to fp32 on the CPU (no overflow)."""
    _skip_unsupported(precision)
    torch.set_num_threads(4)
    crops = _crops(6, seed=1)
    cpu = load_classifier(timm_folder[arch], backend="torch", device="cpu", threads=4).predict(crops)
    gpu = load_classifier(timm_folder[arch], backend="torch", device=DEV,
                          accel=AccelOptions(precision=precision, channels_last=True)).predict(crops)
    assert np.isfinite(gpu).all()
    assert np.abs(gpu - cpu).max() < 5e-2  # random weights: near-uniform probabilities, argmax is noise


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_warm_up_same_output_no_recompile(tiny, mode):
    """Compiled after warm-up == eager; no graph is compiled mid-stream; with CUDA graphs the
    classifier may be called from another thread (the pipeline's inference thread)."""
    from torch._dynamo.utils import counters

    crops = _crops(11, seed=2)
    eager = load_classifier(tiny, backend="torch", device=DEV, accel=AccelOptions(precision="fp16"))
    comp = load_classifier(tiny, backend="torch", device=DEV, accel=AccelOptions(
        precision="fp16", compile=True, compile_mode=mode, batch_sizes=(1, 4, 8)))
    assert sorted(comp.warmup_s) == [1, 4, 8]
    graphs = counters["stats"]["unique_graphs"]
    results: dict[int, np.ndarray] = {}

    def work() -> None:
        for n in (1, 3, 8, 11):
            results[n] = comp.predict(crops[:n])

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert sorted(results) == [1, 3, 8, 11]  # the thread did not die
    for n, got in results.items():
        assert np.abs(got - eager.predict(crops[:n])).max() < 1e-2
    assert counters["stats"]["unique_graphs"] == graphs
    comp.close()


def test_ort_cuda_matches_cpu(tiny):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime {ort.__version__} has no CUDA provider (onnxruntime-gpu not installed)")
    crops = _crops(8)
    cpu = load_classifier(tiny, backend="onnx", device="cpu").predict(crops)
    clf = load_classifier(tiny, backend="onnx", device="cuda")
    assert clf.provider == "CUDAExecutionProvider"
    assert np.abs(clf.predict(crops) - cpu).max() < 1e-3


def test_config_builds_and_self_checks_the_gpu_classifier(tiny):
    cfg = load_config(None, {"model": {"dir": str(tiny), "device": "cuda", "backend": "torch", "precision": "fp16"},
                             "batching": {"max_batch": 16}})
    clf = classifier_from_config(cfg)
    assert isinstance(clf, CudaTorchClassifier) and clf.device == "cuda" and clf.precision == "fp16"
    assert clf.predict(_crops(16)).shape == (16, 10)


def test_auto_device_picks_cuda_torch(tiny):
    clf = load_classifier(tiny)
    assert isinstance(clf, CudaTorchClassifier) and clf.device == "cuda"
