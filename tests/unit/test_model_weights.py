"""Reading weight files: weights_only refusal, corrupt/truncated files, nesting, mismatches."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from ewaste_stream.model import ModelLoadError, create_model, read_state_dict
from ewaste_stream.model.weights import load_state_dict_into

torch.set_num_threads(1)
WIDTHS = (8, 8, 8, 8)


def _model(num_classes=3):
    torch.manual_seed(0)
    return create_model("ewaste_small_cnn", num_classes, widths=WIDTHS)


class _RunsCode:
    """Unpickling this calls os.mkdir(marker): the kind of payload weights_only must refuse."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "payload": _RunsCode(marker)}, path)
    with pytest.raises(ModelLoadError, match=r"evil\.pth: refused to load.*weights_only=True"):
        read_state_dict(path)
    assert not marker.exists()


def test_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "plain.pkl"
    with open(path, "wb") as f:
        pickle.dump({"w": _RunsCode(tmp_path / "x")}, f)
    with pytest.raises(ModelLoadError, match=r"plain\.pkl"):
        read_state_dict(path)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": sd, "epoch": 3},
    lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
    lambda sd: {"module." + k: v for k, v in sd.items()},
])
def test_checkpoint_layouts_unwrap(tmp_path, wrap):
    sd = _model().state_dict()
    torch.save(wrap(sd), tmp_path / "ck.pth")
    got = read_state_dict(tmp_path / "ck.pth")
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)


def _write(tmp_path, kind):
    sd = _model().state_dict()
    p = tmp_path / ("w.safetensors" if kind.startswith("st") else "w.pth")
    if kind.startswith("st"):
        save_file({k: v.contiguous() for k, v in sd.items()}, str(p))
    else:
        torch.save(sd, p)
    data = p.read_bytes()
    if kind.endswith("truncated"):
        p.write_bytes(data[: len(data) // 2])
    elif kind.endswith("garbage"):
        p.write_bytes(b"\x00\x01garbage" * 100)
    elif kind.endswith("empty"):
        p.write_bytes(b"")
    return p


@pytest.mark.parametrize("kind, match", [
    ("st-truncated", r"w\.safetensors: not a readable safetensors file"),
    ("st-garbage", r"w\.safetensors: not a readable safetensors file"),
    ("st-empty", r"w\.safetensors: weights file is empty"),
    ("pth-truncated", r"w\.pth: not a readable torch checkpoint"),
    ("pth-garbage", r"w\.pth: (not a readable torch checkpoint|refused)"),
    ("pth-empty", r"w\.pth: weights file is empty"),
])
def test_corrupt_files_name_the_file(tmp_path, kind, match):
    with pytest.raises(ModelLoadError, match=match):
        read_state_dict(_write(tmp_path, kind))


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match=r"nope\.pth: weights file not found"):
        read_state_dict(tmp_path / "nope.pth")


def test_mismatched_architecture_is_explained(tmp_path):
    other = create_model("ewaste_small_cnn", 3, widths=(8, 8, 8, 16))
    with pytest.raises(ModelLoadError, match=r"src\.pth: weights do not fit architecture 'ewaste_small_cnn': shape"):
        load_state_dict_into(other, _model().state_dict(), "src.pth")


def test_wrong_class_count_strict_vs_reset_head():
    sd = _model(num_classes=5).state_dict()
    target = _model(num_classes=3)
    with pytest.raises(ModelLoadError, match="classifier.weight file"):
        load_state_dict_into(target, sd, "five.pth")
    head_before = target.classifier.weight.clone()
    load_state_dict_into(target, sd, "five.pth", reset_head=True)
    assert torch.equal(target.classifier.weight, head_before)
    assert torch.equal(target.stem[0].weight, sd["stem.0.weight"])


def test_unrelated_state_dict_is_refused():
    with pytest.raises(ModelLoadError, match="missing key"):
        load_state_dict_into(_model(), {"foo.weight": torch.zeros(3)}, "foo.pth", reset_head=True)
