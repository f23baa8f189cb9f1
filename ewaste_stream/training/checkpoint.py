"""Resumable training state, saved without pickled objects and loaded with ``weights_only=True``.

A full state holds tensors, numbers, strings and plain containers only: model, optimizer,
scheduler and AMP-scaler state dicts, the next epoch, torch's RNG state and the history,
best score and resolved config as JSON strings.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message names the file."""


@dataclass
class TrainState:
    epoch: int = 0  # next epoch to run
    history: list[dict] = field(default_factory=list)
    best_score: float = -1.0
    best_epoch: int = -1


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_full(path: str | Path, model, optimizer, scheduler, scaler, state: TrainState, config_json: str,
              ema=None) -> Path:
    """``ema``: the weight average's module (saved as ``ema``), when training keeps one."""
    p = Path(path)
    extra = {"ema": ema.state_dict()} if ema is not None else {}
    _atomic_save({**extra,
        "format": 1,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": int(state.epoch),
        "torch_rng": torch.get_rng_state(),
        "history_json": json.dumps(state.history),
        "best_score": float(state.best_score),
        "best_epoch": int(state.best_epoch),
        "config_json": config_json,
    }, p)
    return p


def save_weights(path: str | Path, model, epoch: int, score: float) -> Path:
    p = Path(path)
    _atomic_save({"model": model.state_dict(), "epoch": int(epoch), "score": float(score)}, p)
    return p


def load(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found (resume from <work_dir>/last.pt)")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle refusal, truncation, ...
        raise CheckpointError(f"{p}: cannot load with weights_only=True ({str(exc).splitlines()[0]}); "
                              f"the file is corrupt or not a training state written by ewaste-stream") from None


def restore_full(ckpt: dict, path: str | Path, model, optimizer, scheduler, scaler) -> TrainState:
    """Load a full state into freshly built objects; returns the bookkeeping."""
    missing = [k for k in ("model", "optimizer", "scheduler", "scaler", "epoch") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a full training state (missing {missing}); "
                              f"resume from last.pt, not best.pt")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt["scaler"])
    if "torch_rng" in ckpt:
        torch.set_rng_state(ckpt["torch_rng"])
    return TrainState(epoch=int(ckpt["epoch"]), history=json.loads(ckpt.get("history_json", "[]")),
                      best_score=float(ckpt.get("best_score", -1.0)), best_epoch=int(ckpt.get("best_epoch", -1)))


def average_weights(paths: list[str | Path], weights: list[float] | None = None) -> dict:
    """The weighted mean of the ``model`` state dicts of several checkpoints of one architecture
    (a "model soup": checkpoints of one fine-tuning lineage average into a model that is often
    better than each). Full training states and best-weights files both work; of a full state
    that kept a weight average (``ema_decay``), the average is taken. Integer buffers
    (BatchNorm's batch counters) are taken from the first file. Raises :class:`CheckpointError`
    naming the file whose keys or shapes differ from the first one's."""
    if not paths:
        raise CheckpointError("average_weights: no checkpoints given")
    w = [1.0 / len(paths)] * len(paths) if weights is None else [float(x) for x in weights]
    if len(w) != len(paths) or min(w) < 0 or abs(sum(w) - 1.0) > 1e-6:
        raise CheckpointError(f"average_weights: {len(w)} weights for {len(paths)} checkpoints; "
                              f"give one non-negative weight per checkpoint, summing to 1 (got {w})")
    out: dict = {}
    first = None
    for p, wi in zip(paths, w):
        state = load(p)
        if "model" not in state:
            raise CheckpointError(f"{p}: no model weights in this checkpoint (expected best.pt, last.pt or epoch_*.pt)")
        sd = state.get("ema", state["model"])  # a run that kept a weight average ships that
        if first is None:
            first = (p, sd)
            out = {k: (v.double() * wi if v.is_floating_point() else v.clone()) for k, v in sd.items()}
            continue
        if set(sd) != set(out):
            diff = sorted(set(sd) ^ set(out))
            raise CheckpointError(f"{p}: its weights have other keys than {first[0]} (e.g. {diff[:3]}); "
                                  f"only checkpoints of one architecture can be averaged")
        for k, v in sd.items():
            if tuple(v.shape) != tuple(out[k].shape):
                raise CheckpointError(f"{p}: {k} has shape {tuple(v.shape)}, {first[0]} has {tuple(out[k].shape)}")
            if v.is_floating_point():
                out[k] += v.double() * wi
    return {k: (v.to(first[1][k].dtype) if v.is_floating_point() else v) for k, v in out.items()}
