"""ewaste-stream train: fine-tune a classifier and write a model folder."""

from __future__ import annotations

import argparse

HELP = ("train a classifier on ROOT/{train,val}/<Class>/ (photos + simulated belt crops) and write a "
        "calibrated model folder; every recipe key is a flag or a --config YAML key")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..training.cli_flags import add_config_flags

    parser.add_argument("--config", metavar="YAML", help="recipe file (defaults < YAML < flags)")
    add_config_flags(parser)


def run(args: argparse.Namespace) -> int:
    import os

    # on shared, oversubscribed CPUs spinning OpenMP threads waste the cores they wait on;
    # must be set before torch loads its OpenMP runtime (an explicit setting wins)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from loguru import logger

    from ..training.cli_flags import flags_from_args
    from ..training.config import ConfigError, resolve

    try:
        cfg = resolve(flags_from_args(args), args.config)
    except ConfigError as exc:
        logger.error("{}", exc)
        return 2
    from ..model import ModelLoadError
    from ..training.checkpoint import CheckpointError
    from ..training.data import DatasetError
    from ..training.finalize import finalize
    from ..training.loop import setup, train

    try:
        run_ = setup(cfg)
        state = train(run_)
        metrics = finalize(run_, state)
    except (DatasetError, ModelLoadError, CheckpointError) as exc:
        logger.error("{}", exc)
        return 2
    val = metrics["val"]
    logger.info("wrote {}: val leak-free photo acc {} belt acc {} (best epoch {})", cfg.out,
                val["photo"]["single"]["leak_free"].get("accuracy"),
                val.get("belt", {}).get("single", {}).get("leak_free", {}).get("accuracy"), metrics["best_epoch"])
    return 0
