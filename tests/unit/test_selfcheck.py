"""Start-up self-check and building the classifier from the config."""

from __future__ import annotations

import numpy as np
import pytest

from ewaste_stream import CLASS_NAMES
from ewaste_stream.config import load_config
from ewaste_stream.model import ModelLoadError, classifier_from_config, self_check
from ewaste_stream.model.selfcheck import check_batch_sizes
from ewaste_stream.model.backends import OrtClassifier, TorchClassifier


class Stub:
    """A classifier whose output is chosen by the test."""

    backend = "stub"
    device = "cpu"
    class_names = CLASS_NAMES

    def __init__(self, make):
        self.make = make
        self.batches: list[int] = []

    def predict(self, crops):
        self.batches.append(len(crops))
        return self.make(len(crops))


def _uniform(n):
    return np.full((n, len(CLASS_NAMES)), 1.0 / len(CLASS_NAMES), np.float32)


def test_report_times_two_batches_per_size():
    stub = Stub(_uniform)
    r = self_check(stub, [8, 1, 8])
    assert stub.batches == [1, 1, 8, 8]  # warm-up + timed, per distinct size, smallest first
    assert sorted(r.first_ms) == sorted(r.steady_ms) == [1, 8]
    assert r.backend == "stub" and r.device == "cpu" and r.precision == "fp32" and not r.compiled
    assert "batch 8" in r.line() and "stub on cpu" in r.line()


@pytest.mark.parametrize("make, error", [
    (lambda n: _uniform(n + 1), "shape"),
    (lambda n: _uniform(n)[:, :3], "shape"),
    (lambda n: np.full((n, len(CLASS_NAMES)), np.nan, np.float32), "non-finite"),
    (lambda n: _uniform(n) * 2, "unnormalised"),
    (lambda n: (_ for _ in ()).throw(RuntimeError("CUDA out of memory")), "batch of 1 on cpu: RuntimeError: CUDA out"),
])
def test_bad_classifier_fails_the_check(make, error):
    with pytest.raises(ModelLoadError, match=error):
        self_check(Stub(make), [1])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from ewaste_stream.model.small_cnn import tiny_model_folder

    return tiny_model_folder(tmp_path_factory.mktemp("selfcheck") / "tiny")


@pytest.mark.parametrize("model, batching, kind", [
    ({"backend": "onnx", "device": "cpu", "threads": 1}, {"max_batch": 4}, OrtClassifier),
    ({"backend": "torch", "device": "cpu", "threads": 1, "precision": "bf16", "channels_last": True},
     {"max_batch": 2}, TorchClassifier),
    ({"backend": "onnx", "device": "cuda", "threads": 1}, {"max_batch": 2}, OrtClassifier),  # CPU fallback, logged
])
def test_classifier_from_config(folder, model, batching, kind):
    cfg = load_config(None, {"model": {"dir": str(folder), **model}, "batching": batching})
    clf = classifier_from_config(cfg)
    assert isinstance(clf, kind) and clf.device == "cpu"
    assert getattr(clf, "channels_last", False) == model.get("channels_last", False)
    assert clf.predict([np.zeros((40, 30, 3), np.uint8)]).shape == (1, 10)


def test_classifier_from_config_missing_folder(tmp_path):
    cfg = load_config(None, {"model": {"dir": str(tmp_path / "nope")}})
    with pytest.raises(ModelLoadError, match="nope"):
        classifier_from_config(cfg)


@pytest.mark.parametrize("device, compiled, max_batch, sizes", [
    ("cpu", False, 32, [1, 4]),  # any batch size works on the CPU: no two batches of 32 at every start
    ("cpu", False, 2, [1, 2]),
    ("cpu", False, 1, [1]),
    ("cuda", False, 32, [1, 32]),  # a GPU builds a plan per shape: the largest one is checked
    ("cuda:1", False, 16, [1, 16]),
    ("cpu", True, 32, [1, 32]),  # compiled: a bucket per size
])
def test_start_up_check_batch_sizes(device, compiled, max_batch, sizes):
    from types import SimpleNamespace

    assert check_batch_sizes(SimpleNamespace(device=device, compiled=compiled), max_batch) == sizes
