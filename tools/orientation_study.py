#!/usr/bin/env python
"""Which orientation strategy wins on belt crops? (issue 10)

Renders belt crops of the **val** photos three ways, with the same items, scales, belts and
boxes, only the item's rotation differs:

- ``random``: any angle, as on the belt (what the classifier gets with no orientation handling);
- ``quarter``: the angle rounded down to a multiple of 90 degrees. This is what de-rotating each
  crop by the detector's min-area rectangle achieves at best: the rectangle gives the angle
  modulo 90 degrees, so a 0/90/180/270 ambiguity is left;
- ``upright``: angle 0, i.e. a perfect de-rotation (an upper bound no detector reaches).

Each set is classified with a single view and with test-time augmentation over the four
90-degree rotations (``tta``). Accuracy is reported on all crops and leak-free (crops of val
photos with an exact or near copy in train removed). If ``upright``/``quarter`` do not beat
``random`` by more than noise, de-rotation is not worth building into the pipeline.

    python tools/orientation_study.py --model models/default \\
        --data ../shared/datasets/ewaste/val --train-dir ../shared/datasets/ewaste/train
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

MODES = ("random", "quarter", "upright")


def mode_angle(mode: str, angle: float) -> float:
    """The rotation an item has in ``mode`` when its belt rotation is ``angle`` (degrees, -180..180)."""
    if mode == "random":
        return angle
    if mode == "quarter":
        return 90.0 * np.floor(angle / 90.0)
    if mode == "upright":
        return 0.0
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def render_sets(paths: list[str], per_photo: int, seed: int, size: int) -> dict[str, list[np.ndarray]]:
    from ewaste_stream.sim.compose import render_belt_crop
    from ewaste_stream.training.data import read_rgb

    sets: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
    for i, p in enumerate(paths):
        img = read_rgb(p)
        for k in range(per_photo):
            angle = float(np.random.default_rng([seed, i, k, 1]).uniform(-180.0, 180.0))
            for m in MODES:  # same rng stream per mode: only the rotation differs
                rng = np.random.default_rng([seed, i, k])
                sets[m].append(render_belt_crop(img, rng, out_size=size, angle=mode_angle(m, angle)))
    return sets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model folder")
    ap.add_argument("--data", required=True, help="val folder (Class/*.jpg)")
    ap.add_argument("--train-dir", help="train folder, to drop leaked val photos")
    ap.add_argument("--per-photo", type=int, default=3)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--size", type=int, default=224, help="rendered crop size (px) before the model's resize")
    ap.add_argument("--json", help="also write the table here")
    args = ap.parse_args(argv)

    from ewaste_stream.training.cli_flags import run_tool

    return run_tool(run, args)  # a bad folder or file: named, exit 2, no traceback


def run(args: argparse.Namespace) -> int:
    from ewaste_stream.model.backends import load_classifier
    from ewaste_stream.training.data import scan_split
    from ewaste_stream.training.datasets import predict_probs
    from ewaste_stream.training.evaluation import leak_check

    split = scan_split(args.data)
    leaked, _ = leak_check(split, args.train_dir)
    paths = [str(s.path) for s in split.samples]
    labels = np.repeat([s.label for s in split.samples], args.per_photo)
    keep = np.repeat([p not in leaked for p in paths], args.per_photo)
    clf = load_classifier(args.model, backend="onnx", device="cpu")
    sets = render_sets(paths, args.per_photo, args.seed, args.size)
    rows = []
    print(f"| crops | view | accuracy (all, n={len(labels)}) | leak-free (n={int(keep.sum())}) |\n|---|---|---|---|")
    for mode, crops in sets.items():
        for view, tta in (("single", False), ("tta_rot90", True)):
            hit = predict_probs(clf.predict, crops, batch_size=32, tta=tta).argmax(1) == labels
            row = {"crops": mode, "view": view, "acc_all": round(float(hit.mean()), 4),
                   "acc_leak_free": round(float(hit[keep].mean()), 4)}
            rows.append(row)
            print(f"| {mode} | {view} | {row['acc_all']:.4f} | {row['acc_leak_free']:.4f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "seed": args.seed, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
