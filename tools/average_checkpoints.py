#!/usr/bin/env python
"""Average the weights of several training checkpoints into a model folder ("model soup").

Checkpoints of one fine-tuning lineage (epochs of one run, or a run and the run resumed from
it) lie in one basin of the loss, and their weight average is often better than each of them,
for the price of none: it is one model of the same size and speed. This writes a model folder
at ``--input-size`` with the temperature refitted on the leak-free val photos + belt crops and
the saved ONNX file evaluated on them (like ``tools/resize_model.py``). Measure it with
``ewaste-stream evaluate`` and ``ewaste-stream replay`` before shipping it.

    python tools/average_checkpoints.py runs/mix0.5/work/last.pt runs/r224/work/best.pt runs/r224/work/last.pt \\
        --like models/default --input-size 192 --out runs/soup192 \\
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
    ap.add_argument("checkpoints", nargs="+", help="checkpoints (best.pt, last.pt, epoch_*.pt) of one architecture")
    ap.add_argument("--like", required=True, help="model folder with the same architecture and classes (its "
                                                  "model.json gives arch, classes, mean/std)")
    ap.add_argument("--weights", type=float, nargs="+", help="one weight per checkpoint (default: equal)")
    ap.add_argument("--input-size", type=int, help="input size of the result (default: the --like folder's)")
    ap.add_argument("--out", required=True, help="model folder to write (may not be the --like folder)")
    add_recalibration_flags(ap, name_default="the --like folder's")
    args = ap.parse_args(argv)
    if Path(args.out).resolve() == Path(args.like).resolve():
        ap.error("--out must be another folder than --like")
    if args.input_size is not None and not 32 <= args.input_size <= 1024:
        ap.error("--input-size must lie in 32..1024")
    if args.weights is not None:
        if len(args.weights) != len(args.checkpoints) or min(args.weights) < 0 or sum(args.weights) <= 0:
            ap.error(f"--weights: give {len(args.checkpoints)} non-negative numbers, one per checkpoint")
        args.weights = [x / sum(args.weights) for x in args.weights]

    return run_tool(run, args)  # a bad folder or file: named, exit 2, no traceback


def run(args: argparse.Namespace) -> int:
    from ewaste_stream.model import load_torch_model
    from ewaste_stream.model.weights import load_state_dict_into
    from ewaste_stream.training.checkpoint import average_weights
    from ewaste_stream.training.finalize import save_recalibrated

    model, info = load_torch_model(args.like)
    state = average_weights(args.checkpoints, args.weights)
    load_state_dict_into(model, {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()},
                         " + ".join(args.checkpoints))
    size = args.input_size or info.input_size
    name = args.name or info.name
    info = info.model_copy(update={"input_size": size, "name": name, "version": f"{name}-soup{len(args.checkpoints)}"
                                                                                f"-at{size}", "metrics": {}})
    weights = args.weights or [1.0 / len(args.checkpoints)] * len(args.checkpoints)
    metrics = save_recalibrated(model, info, args.out, args.data, args.train_dir, args.belt_per_photo, args.belt_seed,
                                provenance={"averaged_from": [{"checkpoint": str(p), "weight": round(w, 6)}
                                                              for p, w in zip(args.checkpoints, weights)]})
    print(json.dumps({"temperature_fit": metrics["temperature_fit"], "val": metrics["val"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
