"""The CUDA torch path's logic, run on the CPU: buckets, precision, options, device
preprocessing through the classifier, compile warm-up (with a cheap compiler backend)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ewaste_stream.model import ModelLoadError, load_classifier
from ewaste_stream.model.backends import TorchClassifier
from ewaste_stream.model.cuda import AccelOptions, CudaTorchClassifier, bucket_for, bucket_sizes, resolve_precision
from ewaste_stream.model.small_cnn import tiny_model_folder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("cuda") / "tiny", temperature=1.3)


def _crops(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(10, 80)), int(rng.integers(10, 80)), 3), dtype=np.uint8)
            for _ in range(n)]


@pytest.mark.parametrize("max_batch, expected", [
    (1, (1,)), (2, (1, 2)), (12, (1, 2, 4, 8, 12)), (32, (1, 2, 4, 8, 16, 32)), (33, (1, 2, 4, 8, 16, 32, 33)),
])
def test_bucket_sizes(max_batch, expected):
    assert bucket_sizes(max_batch) == expected


@pytest.mark.parametrize("n, buckets, expected, error", [
    (1, (1, 8, 32), 1, None),
    (2, (1, 8, 32), 8, None),
    (8, (1, 8, 32), 8, None),
    (32, (1, 8, 32), 32, None),
    (33, (1, 8, 32), None, "larger than the largest bucket 32"),
])
def test_bucket_for(n, buckets, expected, error):
    if error:
        with pytest.raises(ValueError, match=error):
            bucket_for(n, buckets)
    else:
        assert bucket_for(n, buckets) == expected


@pytest.mark.parametrize("precision, device, bf16_ok, expected, error", [
    ("auto", "cuda", True, "fp16", None),
    ("auto", "cuda:1", False, "fp16", None),
    ("fp16", "cuda", True, "fp16", None),
    ("bf16", "cuda", True, "bf16", None),
    ("fp32", "cuda", True, "fp32", None),
    ("bf16", "cuda", False, None, "no bfloat16 support.*model.precision: fp16"),
    ("auto", "cpu", True, "fp32", None),
    ("fp16", "cpu", True, "fp32", None),  # reduced precision is a CUDA feature
    ("bf16", "cpu", False, "fp32", None),
    ("fp8", "cuda", True, None, "precision 'fp8'"),
])
def test_resolve_precision(precision, device, bf16_ok, expected, error):
    if error:
        with pytest.raises(ValueError, match=error):
            resolve_precision(precision, device, bf16_ok)
    else:
        assert resolve_precision(precision, device, bf16_ok) == expected


@pytest.mark.parametrize("kwargs, error", [
    ({}, None),
    ({"precision": "half"}, "precision 'half'"),
    ({"compile_mode": "fast"}, "compile_mode 'fast'"),
    ({"max_batch": 0}, "max_batch 0"),
    ({"batch_sizes": (8, 1)}, "increasing"),
    ({"batch_sizes": (1, 1)}, "increasing"),
    ({"batch_sizes": (0, 4)}, "increasing"),
    ({"batch_sizes": (1, 4.5)}, "whole numbers"),
    ({"batch_sizes": (1, 8, 32)}, None),
])
def test_accel_options_validation(kwargs, error):
    if error:
        with pytest.raises(ValueError, match=error):
            AccelOptions(**kwargs)
    else:
        AccelOptions(**kwargs)


def test_buckets_default_to_powers_of_two():
    assert AccelOptions(max_batch=12).buckets() == (1, 2, 4, 8, 12)
    assert AccelOptions(max_batch=12, batch_sizes=(4, 16)).buckets() == (4, 16)


@pytest.mark.parametrize("channels_last", [False, True])
def test_device_preprocessing_classifier_matches_onnx(folder, channels_last):
    crops = _crops(7)
    ref = load_classifier(folder, backend="onnx", device="cpu", threads=1).predict(crops)
    opts = AccelOptions(channels_last=channels_last, device_preprocess=True)
    clf = CudaTorchClassifier.from_folder(folder, device="cpu", opts=opts)
    got = clf.predict(crops)
    assert got.shape == (7, 10) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 2e-3  # resize may differ by one grey level (tiny 32 px model)
    assert clf.precision == "fp32" and not clf.compiled
    assert clf.predict([]).shape == (0, 10)


def test_load_classifier_routes_cpu_torch_to_the_plain_backend(folder):
    clf = load_classifier(folder, backend="torch", device="cpu", threads=1, accel=AccelOptions(precision="fp16"))
    assert type(clf) is TorchClassifier  # the CPU path is unchanged (fp32, host preprocessing)


def test_option_errors_become_model_load_errors_naming_the_folder(folder, monkeypatch):
    import ewaste_stream.model.cuda as cuda

    def refuse(*_a, **_k):
        raise ValueError("precision bf16: this GPU has no bfloat16 support")

    monkeypatch.setattr(cuda, "resolve_precision", refuse)
    with pytest.raises(ModelLoadError, match=f"{folder}.*bfloat16"):
        CudaTorchClassifier.from_folder(folder, device="cpu", opts=AccelOptions(precision="bf16"))


@pytest.mark.slow
def test_compile_warm_up_covers_every_bucket_and_never_recompiles(folder):
    """Warm-up compiles each bucket once; afterwards any batch size (padded / split) runs
    without a new graph, and gives the same probabilities as eager."""
    from torch._dynamo.utils import counters

    crops = _crops(7, seed=5)
    eager = CudaTorchClassifier.from_folder(folder, device="cpu", opts=AccelOptions(device_preprocess=True))
    before = counters["stats"]["unique_graphs"]
    opts = AccelOptions(compile=True, compile_backend="eager", batch_sizes=(1, 4), device_preprocess=True)
    comp = load_classifier(folder, backend="torch", device="cpu", threads=1, accel=opts)
    assert isinstance(comp, CudaTorchClassifier) and comp.compiled and sorted(comp.warmup_s) == [1, 4]
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= before + 2  # one graph per bucket, made at start-up
    for n in (1, 2, 3, 4, 5, 7):  # 5 and 7 are split into 4 + rest and padded
        np.testing.assert_allclose(comp.predict(crops[:n]), eager.predict(crops[:n]), atol=1e-6)
    assert counters["stats"]["unique_graphs"] == graphs


def test_cuda_graph_mode_runs_every_call_on_one_thread(folder, monkeypatch):
    """With CUDA graphs (thread-local in PyTorch) warm-up and every predict run on the same
    dedicated thread, whichever thread calls predict."""
    import threading

    seen: set[str] = set()
    opts = AccelOptions(compile=True, compile_backend="eager", compile_mode="reduce-overhead", batch_sizes=(4,))
    clf = CudaTorchClassifier.from_folder(folder, device="cpu", opts=opts)
    real = clf._logits_of
    monkeypatch.setattr(clf, "_logits_of", lambda crops: (seen.add(threading.current_thread().name), real(crops))[1])
    crops = _crops(6, seed=9)
    out: list[np.ndarray] = []
    t = threading.Thread(target=lambda: out.append(clf.predict(crops)))
    t.start()
    t.join()
    out.append(clf.predict(crops[:2]))
    assert len(seen) == 1 and next(iter(seen)).startswith("cuda-infer")
    np.testing.assert_allclose(out[1], out[0][:2], atol=1e-6)
    clf.close()
