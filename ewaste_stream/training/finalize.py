"""From the best checkpoint to a shipped model folder: temperature fitted on leak-free val,
saved with the classifier-core format (``save_model_folder``), then the saved folder itself is
evaluated (ONNX when exported: what production runs) and its metrics written to ``model.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from loguru import logger

from . import checkpoint as ckpt
from .calibration import fit_temperature, nll_at
from .evaluation import evaluate_sets, headline, torch_logits, write_outputs
from .loop import Run


def fit_run_temperature(run: Run) -> dict:
    """T by NLL on the leak-free val crops of every val set together (single view)."""
    return fit_sets_temperature(run.model, run.info, run.val_sets, run.leaked, run.device)


def fit_sets_temperature(model, info, sets, leaked: set[str], device: str = "cpu") -> dict:
    """T by NLL on the leak-free crops of ``sets`` together (single view), with the NLL before and after."""
    logits, labels = [], []
    for evset in sets:
        keep = evset.mask_without(leaked)
        logits.append(torch_logits(model, info, [c for c, k in zip(evset.crops, keep) if k], device))
        labels.append(evset.labels[keep])
    z, y = np.concatenate(logits), np.concatenate(labels)
    t = fit_temperature(z, y)
    fit = {"temperature": round(t, 4), "fitted_on": [s.name for s in sets], "n": int(len(y)),
           "nll_t1": round(nll_at(z, y, 1.0), 4), "nll_fitted": round(nll_at(z, y, t), 4)}
    logger.info("temperature {:.3f} (val NLL {:.4f} -> {:.4f}, n={})", t, fit["nll_t1"], fit["nll_fitted"], fit["n"])
    return fit


def data_description(run: Run) -> dict:
    cfg = run.cfg
    return {
        "train": run.splits["train"].describe(),
        "val": run.splits["val"].describe(),
        "val_leaks": {"n": len(run.leaks), "byte_identical": sum(lk.exact for lk in run.leaks),
                      "rule": "sha256 equal or dHash Hamming <= 3 to a train image"},
        "belt_mix": cfg.belt_mix,
        "belt_eval": {"per_photo": cfg.val_belt_per_photo, "seed": cfg.belt_seed,
                      "renderer": "ewaste_stream.sim.compose.render_belt_crop"},
        "source": "Kaggle 'E-Waste Image Dataset' (akshat103); research/development use only, see models/README.md",
    }


def finalize(run: Run, state: ckpt.TrainState) -> dict:
    """Write the model folder ``cfg.out`` and its evaluation; returns the evaluation summary."""
    from ..model import load_classifier, save_model_folder, write_model_info

    cfg = run.cfg
    best = run.work_dir / "best.pt"
    if best.is_file():
        run.model.load_state_dict(ckpt.load(best)["model"])
    fit = fit_run_temperature(run)
    history_best = state.history[state.best_epoch] if 0 <= state.best_epoch < len(state.history) else {}
    info = run.info.model_copy(update={"temperature": fit["temperature"], "data": data_description(run),
                                       "version": f"{cfg.model_name()}-e{state.best_epoch + 1}"})
    out = save_model_folder(cfg.out, run.model.cpu(), info, export_onnx=cfg.export_onnx)
    clf = load_classifier(out, device="cpu", threads=cfg.threads)
    results = evaluate_sets(clf.predict, run.val_sets, info.class_names, run.leaked,
                            views=("single", "tta_rot90"))
    metrics = {"val": headline(results), "temperature_fit": fit, "best_epoch": state.best_epoch + 1,
               "epochs_run": state.epoch, "selection": {"on": cfg.select_on, "score": history_best.get("score")},
               "backend_evaluated": type(clf).__name__}
    from ..model import ModelInfo

    saved = json.loads((out / "model.json").read_text(encoding="utf-8"))
    saved["metrics"] = metrics
    write_model_info(out, ModelInfo.model_validate(saved))
    write_reports(out, results, run, metrics)
    return metrics


def write_reports(out: Path, results: dict, run: Run, metrics: dict) -> None:
    """Evaluation files plus the training curve, history and resolved config next to the model."""
    write_outputs(out, results, run.info.class_names, run.leaks, metrics, stem="eval_val")
    for f in ("training_curve.png", "train_config.yaml", "history.json"):
        if (run.work_dir / f).is_file():
            shutil.copy2(run.work_dir / f, Path(out) / f)


def save_recalibrated(model, info, out: str | Path, val_dir: str | Path, train_dir: str | Path | None,
                      belt_per_photo: int = 3, belt_seed: int = 20261127, provenance: dict | None = None) -> dict:
    """Save ``model`` as a model folder at ``info.input_size`` with its temperature refitted by NLL
    on the leak-free val photos + val belt crops (the sets and seed ``ewaste-stream train`` uses),
    then evaluate the saved ONNX file on them and record it all in ``model.json``. Used for a model
    served at another input size and for an average of checkpoints; returns the metrics."""
    from ..model import load_classifier, load_model_info, save_model_folder, write_model_info
    from .data import scan_split
    from .datasets import belt_set, photo_set
    from .evaluation import leak_check

    split = scan_split(val_dir, info.class_names)
    leaked, leaks = leak_check(split, train_dir)
    sets = (photo_set(split), belt_set(split, belt_per_photo, belt_seed, cache_dir=None))
    fit = {**fit_sets_temperature(model, info, sets, leaked), **(provenance or {})}
    info = info.model_copy(update={"temperature": fit["temperature"], "created": ""})
    saved = save_model_folder(out, model, info, export_onnx=True)
    clf = load_classifier(saved, backend="onnx", device="cpu")  # what production runs
    results = evaluate_sets(clf.predict, sets, info.class_names, leaked, views=("single", "tta_rot90"))
    metrics = {**info.metrics, "val": headline(results), "temperature_fit": fit}
    write_model_info(saved, load_model_info(saved).model_copy(update={"metrics": metrics}))
    write_outputs(saved, results, info.class_names, leaks, metrics, stem="eval_val")
    return metrics
