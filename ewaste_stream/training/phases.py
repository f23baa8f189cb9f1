"""Three training phases: head only -> head + later backbone stages -> everything.

Backbone tensors are ordered as the model defines them (stem first), so "later stages" are
the last ``partial_fraction`` of them and ``frozen_fraction`` (a CPU-budget knob) freezes the
earliest ones for the whole run. The optimizer holds two groups (head, backbone at
``backbone_lr_scale``); each phase scales both by ``phase_lr_scale[phase]``. BatchNorm layers
without trainable parameters run in eval mode, so frozen stages keep their statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import TrainConfig


@dataclass(frozen=True)
class ParamSplit:
    head: tuple[str, ...]
    backbone: tuple[str, ...]  # model order, stem first

    @classmethod
    def of(cls, model: torch.nn.Module) -> "ParamSplit":
        head_ids = {id(p) for p in model.get_classifier().parameters()}
        names = [(n, id(p)) for n, p in model.named_parameters()]
        head = tuple(n for n, i in names if i in head_ids)
        if not head:
            raise ValueError(f"{type(model).__name__}: get_classifier() has no parameters; cannot train a head")
        return cls(head, tuple(n for n, i in names if i not in head_ids))

    def trainable(self, cfg: TrainConfig, phase: int) -> set[str]:
        n = len(self.backbone)
        first_ok = int(round(cfg.frozen_fraction * n))
        if phase == 0:
            start = n
        elif phase == 1:
            start = max(first_ok, n - int(round(cfg.partial_fraction * n)))
        else:
            start = first_ok
        return set(self.head) | set(self.backbone[start:])

    def never_trained(self, cfg: TrainConfig) -> set[str]:
        return set(self.backbone[:int(round(cfg.frozen_fraction * len(self.backbone)))])


def build_optimizer(model: torch.nn.Module, split: ParamSplit, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = dict(model.named_parameters())
    frozen = split.never_trained(cfg)
    groups = [
        {"params": [params[n] for n in split.head], "lr": cfg.lr, "name": "head"},
        {"params": [params[n] for n in split.backbone if n not in frozen], "lr": cfg.lr * cfg.backbone_lr_scale,
         "name": "backbone"},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, weight_decay=cfg.weight_decay)


def group_base_lrs(optimizer: torch.optim.Optimizer, cfg: TrainConfig, phase: int) -> list[float]:
    scale = cfg.phase_lr_scale[phase]
    return [cfg.lr * scale * (1.0 if g.get("name") == "head" else cfg.backbone_lr_scale)
            for g in optimizer.param_groups]


def apply_phase(model: torch.nn.Module, split: ParamSplit, cfg: TrainConfig, phase: int, scheduler) -> None:
    """Set ``requires_grad`` for the phase and rescale the scheduler's base LRs."""
    keep = split.trainable(cfg, phase)
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)
    scheduler.base_lrs = group_base_lrs(scheduler.optimizer, cfg, phase)


def freeze_idle_norms(model: torch.nn.Module) -> None:
    """Put normalisation layers whose parameters are all frozen into eval mode (call after train())."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            ps = list(m.parameters(recurse=False))
            if ps and not any(p.requires_grad for p in ps):
                m.eval()


def count_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
