"""CLI flags generated from :class:`TrainConfig`, so every recipe key is also a flag."""

from __future__ import annotations

import argparse
import sys
import typing
from typing import Any

from .config import TrainConfig

_SHORT = {"data": "dataset root with train/<Class>/ and val/<Class>/", "out": "model folder to write"}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """``--some-key`` for every TrainConfig field; defaults are None so YAML/defaults apply."""
    for name, field in TrainConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = field.default if field.default is not None and not callable(field.default) else None
        help_text = (_SHORT.get(name) or field.description or "") + (f" (default: {default})" if default is not None else "")
        kind = _base_type(field.annotation)
        kwargs: dict[str, Any] = {"default": None, "help": help_text, "dest": name}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind is tuple:
            kwargs.update(nargs=3, type=float, metavar="F")
        elif typing.get_origin(kind) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(kind))
        else:
            kwargs["type"] = kind if kind in (int, float) else str
        parser.add_argument(flag, **kwargs)


def _base_type(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    if origin is tuple:
        return tuple
    return annotation


def flags_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name, None) for name in TrainConfig.model_fields}


def add_recalibration_flags(parser: argparse.ArgumentParser, name_default: str) -> None:
    """The val data flags of the tools that write a model folder with a refitted temperature
    (:func:`~ewaste_stream.training.finalize.save_recalibrated`)."""
    parser.add_argument("--data", required=True, help="val folder (Class/*.jpg) for the temperature fit")
    parser.add_argument("--train-dir", help="train folder: leaked val photos are left out of the fit")
    parser.add_argument("--belt-per-photo", type=int, default=3, help="val belt crops per photo (default 3)")
    parser.add_argument("--belt-seed", type=int, default=20261127, help="seed of the val belt crops (training's)")
    parser.add_argument("--name", help=f"model name (default: {name_default})")


def run_tool(run, args: argparse.Namespace) -> int:
    """``run(args)`` for the model tools in ``tools/``: a missing or broken model folder, dataset
    or checkpoint prints ``error: <message naming the file>`` and returns 2, no traceback."""
    from ..model import ModelLoadError
    from .checkpoint import CheckpointError
    from .data import DatasetError

    try:
        return run(args)
    except (ModelLoadError, DatasetError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
