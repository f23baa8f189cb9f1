#!/usr/bin/env python
"""Serve a trained model folder at another input size, recalibrated.

A convolutional classifier runs at any input size, and a smaller one is cheaper on the CPU
(cost ~ size^2), but its confidences shift. This copies a model folder's weights, sets the new
input size, exports ONNX at that size (verified against torch) and refits the temperature by NLL
on the leak-free val photos + val belt crops (the same sets and seed as ``ewaste-stream train``),
so the voting thresholds keep meaning what they say. Measure the result with
``ewaste-stream evaluate`` and ``ewaste-stream replay`` before shipping it.

    python tools/resize_model.py runs/r224/model --input-size 192 --out models/default \\
        --data ../shared/datasets/ewaste/val --train-dir ../shared/datasets/ewaste/train
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from ewaste_stream.training.cli_flags import add_recalibration_flags, run_tool

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="model folder to start from")
    ap.add_argument("--input-size", type=int, required=True, help="new input size (px)")
    ap.add_argument("--out", required=True, help="model folder to write (may not be the input folder)")
    add_recalibration_flags(ap, name_default="the source's name")
    args = ap.parse_args(argv)
    if Path(args.out).resolve() == Path(args.model).resolve():
        ap.error("--out must be another folder than the source model")
    if not 32 <= args.input_size <= 1024:
        ap.error("--input-size must lie in 32..1024")

    return run_tool(run, args)  # a bad folder or file: named, exit 2, no traceback


def run(args: argparse.Namespace) -> int:
    from ewaste_stream.model import load_torch_model
    from ewaste_stream.training.finalize import save_recalibrated

    model, info = load_torch_model(args.model)
    old_size = info.input_size
    info = info.model_copy(update={"input_size": args.input_size, "name": args.name or info.name,
                                   "version": f"{info.version or info.name}-at{args.input_size}"})
    metrics = save_recalibrated(model, info, args.out, args.data, args.train_dir, args.belt_per_photo, args.belt_seed,
                                provenance={"resized_from": {"model": str(args.model), "input_size": old_size}})
    print(json.dumps({"temperature_fit": metrics["temperature_fit"], "val": metrics["val"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
