"""The training loop: phases, AdamW + CosineAnnealingWarmRestarts, label smoothing, AMP on CUDA,
grad clipping, per-epoch validation on leak-free val photos and belt crops, best/last/periodic
checkpoints, resume from the full state. :func:`train` returns the bookkeeping; ``finalize``
(in :mod:`.finalize`) turns the best weights into a calibrated model folder.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from loguru import logger

from . import checkpoint as ckpt
from .config import TrainConfig, save_resolved
from .data import Split, scan_root
from .datasets import EvalSet, TrainSet, belt_set, photo_set, spread
from .evaluation import leak_check, torch_logits
from .phases import ParamSplit, apply_phase, build_optimizer, count_trainable, freeze_idle_norms
from .plots import training_curve_png


@dataclass
class Run:
    """Everything a training run works on, built once by :func:`setup`."""

    cfg: TrainConfig
    device: str
    splits: dict[str, Split]
    model: torch.nn.Module
    info: object  # ModelInfo (preprocessing of this run)
    val_sets: list[EvalSet]
    leaked: set[str]
    leaks: list
    work_dir: Path


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device cuda asked for, but torch sees no CUDA device; use --device cpu")
    return name


def build_model(cfg: TrainConfig, class_names: tuple[str, ...]):
    from ..model import ModelInfo, create_model

    kwargs = {"drop_rate": cfg.drop_rate}
    if cfg.drop_path_rate and cfg.arch != "ewaste_small_cnn":
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    model = create_model(cfg.arch, len(class_names), pretrained=cfg.pretrained, **kwargs)
    info = ModelInfo.for_model(model, cfg.model_name(), class_names, arch=cfg.arch,
                               input_size=cfg.input_size, weights_dtype=cfg.weights_dtype)
    return model, info


def setup(cfg: TrainConfig) -> Run:
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    splits = scan_root(cfg.data, ("train", "val"))
    class_names = splits["train"].class_names
    model, info = build_model(cfg, class_names)
    leaked, leaks = leak_check(splits["val"], Path(cfg.data) / "train")
    t = time.perf_counter()
    val_sets = [photo_set(splits["val"], cfg.max_val_images)]
    if cfg.val_belt_per_photo:
        val_sets.append(belt_set(splits["val"], cfg.val_belt_per_photo, cfg.belt_seed, cfg.max_val_images,
                                 cache_dir=cfg.cache_dir))
    logger.info("val sets: {} ({:.1f} s to render)", ", ".join(f"{s.name} {len(s)}" for s in val_sets),
                time.perf_counter() - t)
    work = cfg.resolved_work_dir()
    work.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, work / "train_config.yaml")
    return Run(cfg, device, splits, model.to(device), info, val_sets, leaked, leaks, work)


def make_loader(run: Run) -> tuple[TrainSet, torch.utils.data.DataLoader]:
    samples = spread(run.splits["train"].samples, run.cfg.max_train_images)
    from .datasets import render_crops
    from .transforms import PhotoAug

    bank = None
    if run.cfg.belt_mix > 0 and run.cfg.belt_bank > 0:
        bank = render_crops([str(s.path) for s in samples], run.cfg.belt_bank, run.cfg.seed + 1,
                            run.cfg.input_size, run.cfg.cache_dir, processes=max(1, run.cfg.threads))
    ds = TrainSet(samples, run.info, run.cfg.belt_mix, run.cfg.seed, PhotoAug(rot90=run.cfg.rot90), bank)
    gen = torch.Generator().manual_seed(run.cfg.seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=run.cfg.batch_size, shuffle=True, generator=gen,
                                         num_workers=run.cfg.workers, drop_last=len(ds) > run.cfg.batch_size,
                                         persistent_workers=False, pin_memory=run.device.startswith("cuda"))
    return ds, loader


def validate(run: Run, model=None) -> dict:
    """Leak-free single-view accuracy on each val set (+ all-image accuracy), T = 1, of
    ``model`` (default: the run's)."""
    out = {}
    for evset in run.val_sets:
        logits = torch_logits(model if model is not None else run.model, run.info, evset.crops, run.device)
        correct = logits.argmax(axis=1) == evset.labels
        keep = evset.mask_without(run.leaked)
        out[f"val_{evset.name}_acc"] = round(float(correct[keep].mean()), 4)
        out[f"val_{evset.name}_acc_all"] = round(float(correct.mean()), 4)
    return out


def selection_score(cfg: TrainConfig, val: dict) -> float:
    photo, belt = val.get("val_photo_acc"), val.get("val_belt_acc")
    if cfg.select_on == "photo" or belt is None:
        return photo
    if cfg.select_on == "belt":
        return belt
    return (photo + belt) / 2


def train_epoch(run: Run, loader, optimizer, scheduler, scaler, epoch: int, ema=None) -> dict:
    cfg, model = run.cfg, run.model
    from tqdm import tqdm

    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    amp = cfg.amp and run.device.startswith("cuda")
    model.train()
    freeze_idle_norms(model)
    params = [p for p in model.parameters() if p.requires_grad]
    n, loss_sum, correct, seen = len(loader), 0.0, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True, mininterval=5)
    for i, (x, y) in enumerate(bar):
        scheduler.step(epoch + i / n)
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            out = model(x)
            loss = criterion(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update(model)
        loss_sum += float(loss.detach()) * len(y)
        correct += int((out.argmax(1) == y).sum())
        seen += len(y)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
    return {"loss": round(loss_sum / max(seen, 1), 4), "train_acc": round(correct / max(seen, 1), 4),
            "lr": optimizer.param_groups[0]["lr"]}


def _resume_path(cfg: TrainConfig, work: Path) -> Path | None:
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        p = work / "last.pt"
        return p if p.is_file() else None
    return Path(cfg.resume)


def _reschedule(scheduler, cfg: TrainConfig) -> None:
    """Apply the config's schedule to a restored scheduler: a run may be resumed with a longer
    schedule (e.g. ``--epochs 14 --t0 14``). The scheduler is stepped with explicit epochs, so
    the new cosine takes over from the current epoch."""
    old = (scheduler.T_0, scheduler.T_mult, scheduler.eta_min)
    scheduler.T_0, scheduler.T_i, scheduler.T_mult, scheduler.eta_min = cfg.t0, cfg.t0, cfg.t_mult, cfg.eta_min
    if old != (cfg.t0, cfg.t_mult, cfg.eta_min):
        logger.info("schedule changed on resume: T_0/T_mult/eta_min {} -> {}", old, (cfg.t0, cfg.t_mult, cfg.eta_min))


def train(run: Run) -> ckpt.TrainState:
    """Run (or continue) the epochs; writes last.pt every epoch, best.pt on improvement and
    epoch_NNN.pt every ``checkpoint_every`` epochs into the work dir. Returns the bookkeeping."""
    cfg, model, work = run.cfg, run.model, run.work_dir
    split = ParamSplit.of(model)
    optimizer = build_optimizer(model, split, cfg)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=cfg.t0, T_mult=cfg.t_mult,
                                                                     eta_min=cfg.eta_min)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and run.device.startswith("cuda"))
    state = ckpt.TrainState()
    resume = _resume_path(cfg, work)
    saved = ckpt.load(resume) if resume is not None else {}
    if resume is not None:
        state = ckpt.restore_full(saved, resume, model, optimizer, scheduler, scaler)
        _reschedule(scheduler, cfg)
        logger.info("resumed from {} at epoch {} (best {:.4f} at epoch {})", resume, state.epoch + 1,
                    state.best_score, state.best_epoch + 1)
    ema = None
    if cfg.ema_decay > 0:  # after the restore: a fresh average starts from the restored weights
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.ema_decay)
        if "ema" in saved:
            ema.module.load_state_dict(saved["ema"])
        elif resume is not None:
            logger.info("{} has no weight average; it starts from the restored weights", resume)
    ds, loader = make_loader(run)
    config_json = json.dumps(cfg.model_dump(mode="json"))
    for epoch in range(state.epoch, cfg.epochs):
        phase = cfg.phase(epoch)
        apply_phase(model, split, cfg, phase, scheduler)
        ds.set_epoch(epoch)
        t0 = time.perf_counter()
        rec = {"epoch": epoch + 1, "phase": phase, "trainable": count_trainable(model),
               **train_epoch(run, loader, optimizer, scheduler, scaler, epoch, ema)}
        rec["train_s"] = round(time.perf_counter() - t0, 1)
        shipped = ema.module if ema is not None else model  # what is validated, selected and saved as best
        rec.update(validate(run, shipped))
        rec["score"] = round(selection_score(cfg, rec), 4)
        rec["epoch_s"] = round(time.perf_counter() - t0, 1)
        state.history.append(rec)
        state.epoch = epoch + 1
        if rec["score"] > state.best_score:
            state.best_score, state.best_epoch = rec["score"], epoch
            ckpt.save_weights(work / "best.pt", shipped, epoch, rec["score"])
        ema_module = ema.module if ema is not None else None
        ckpt.save_full(work / "last.pt", model, optimizer, scheduler, scaler, state, config_json, ema_module)
        if (epoch + 1) % cfg.checkpoint_every == 0:
            ckpt.save_full(work / f"epoch_{epoch + 1:03d}.pt", model, optimizer, scheduler, scaler, state, config_json,
                           ema_module)
        logger.info("epoch {}/{} phase {}: loss {:.4f} train acc {:.4f} | val photo {:.4f} belt {} | lr {:.2e} | "
                    "{:.0f} s{}", epoch + 1, cfg.epochs, phase, rec["loss"], rec["train_acc"], rec["val_photo_acc"],
                    rec.get("val_belt_acc", "-"), rec["lr"], rec["epoch_s"],
                    " (best)" if state.best_epoch == epoch else "")
        (work / "history.json").write_text(json.dumps(state.history, indent=1), encoding="utf-8")
        training_curve_png(state.history, work / "training_curve.png")
    return state
