"""Weight averaging of checkpoints ("model soup"): the mean of the float tensors, integer buffers
from the first file, and a clear error naming the file that does not fit."""

import pytest
import torch

from ewaste_stream.training.checkpoint import CheckpointError, average_weights


def _ckpt(path, scale: float, extra: dict | None = None):
    sd = {"w": torch.full((2, 3), scale), "b": torch.full((3,), -scale, dtype=torch.float16),
          "bn.num_batches_tracked": torch.tensor(int(scale * 10))}
    sd.update(extra or {})
    torch.save({"model": sd, "epoch": 1, "score": 0.5}, path)
    return path


def test_uniform_and_weighted_means(tmp_path):
    a, b, c = (_ckpt(tmp_path / f"{n}.pt", s) for n, s in (("a", 1.0), ("b", 2.0), ("c", 6.0)))
    avg = average_weights([a, b, c])
    assert torch.allclose(avg["w"], torch.full((2, 3), 3.0))
    assert avg["b"].dtype == torch.float16 and torch.allclose(avg["b"].float(), torch.full((3,), -3.0))
    assert int(avg["bn.num_batches_tracked"]) == 10  # from the first file, not averaged
    w = average_weights([a, c], [0.75, 0.25])
    assert torch.allclose(w["w"], torch.full((2, 3), 0.75 * 1 + 0.25 * 6))


def test_mismatched_checkpoint_is_named(tmp_path):
    a = _ckpt(tmp_path / "a.pt", 1.0)
    bad_shape = _ckpt(tmp_path / "shape.pt", 1.0, {"w": torch.zeros(3, 3)})
    other_keys = _ckpt(tmp_path / "keys.pt", 1.0, {"head.w": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"shape\.pt: w has shape \(3, 3\)"):
        average_weights([a, bad_shape])
    with pytest.raises(CheckpointError, match=r"keys\.pt: .*other keys"):
        average_weights([a, other_keys])
    with pytest.raises(CheckpointError, match="one non-negative weight per checkpoint"):
        average_weights([a, a], [1.0])
    torch.save({"epoch": 3}, tmp_path / "nomodel.pt")
    with pytest.raises(CheckpointError, match=r"nomodel\.pt: no model weights"):
        average_weights([tmp_path / "nomodel.pt"])
