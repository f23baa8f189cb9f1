#!/usr/bin/env python
"""Refit a model folder's classifier head on crops of simulated belt videos of the train photos.

The backbone stays; the head is refitted on what the camera sees (``ewaste_stream/training/head_refit.py``),
the temperature is refitted on the leak-free val photos + belt crops and the folder written like
``tools/average_checkpoints.py`` does. Export the int8 graph and measure it before shipping it:

    for s in 901 902 903 904 905 906 907 908; do python tools/make_belt_video.py --images ../shared/datasets/ewaste/train \\
        --out runs/tr/t$s/belt --seconds 20 --fps 60 --size 1280x720 --rate 35 --seed $s; done
    for s in 921 922 923 924; do python tools/make_belt_video.py --images ../shared/datasets/ewaste/train \\
        --out runs/tr360/t$s/belt --seconds 20 --fps 30 --size 640x360 --rate 20 --seed $s; done
    python tools/refit_head.py --like SOUP --videos runs/tr/t90[1-8]/belt.cam0.mp4 runs/tr360/t92*/belt.cam0.mp4 \\
        --photos ../shared/datasets/ewaste/train --out runs/refitmix \\
        --data ../shared/datasets/ewaste/val --train-dir ../shared/datasets/ewaste/train
    ewaste-stream export runs/refitmix --format onnx-int8 --calib ../shared/datasets/ewaste/train

SOUP is the model the shipped head was refitted from, models/default as of 2026-12-06: ``git worktree add /tmp/soup
120cc5f`` gives it as /tmp/soup/models/default. Today's models/default is the result (models/README.md, "Head refitted
on belt-video crops").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from ewaste_stream.training.cli_flags import add_recalibration_flags, run_tool

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--like", required=True, help="model folder whose head is refitted (its backbone is kept)")
    ap.add_argument("--videos", nargs="+", required=True, metavar="PREFIX",
                    help="simulated videos of TRAIN photos: PREFIX or PREFIX.cam0.mp4 (with PREFIX.gt.jsonl, .meta.json)")
    ap.add_argument("--photos", help="train photo folder (Class/*.jpg) fitted too, so the photos are not forgotten")
    ap.add_argument("--photo-weight", type=float, default=1.0, help="weight of a photo against a video crop (default 1)")
    ap.add_argument("--frames", type=int, default=2, help="views per item: at the line and earlier (default 2)")
    ap.add_argument("--step", type=int, default=10, help="frames between an item's views (default 10)")
    ap.add_argument("--l2", type=float, default=0.1, help="pull of the head's weights toward the old ones (default 0.1)")
    ap.add_argument("--out", required=True, help="model folder to write (may not be the --like folder)")
    add_recalibration_flags(ap, name_default="the --like folder's")
    args = ap.parse_args(argv)
    if Path(args.out).resolve() == Path(args.like).resolve():
        ap.error("--out must be another folder than --like")
    if args.frames < 1 or args.step < 1 or args.l2 < 0 or args.photo_weight < 0:
        ap.error("--frames and --step must be >= 1, --l2 and --photo-weight >= 0")
    return run_tool(run, args)  # a bad folder, video or photo: named, exit 2, no traceback


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ewaste_stream.model import load_torch_model
    from ewaste_stream.training.data import scan_split
    from ewaste_stream.training.datasets import photo_set
    from ewaste_stream.training.finalize import save_recalibrated
    from ewaste_stream.training.head_refit import penultimate, refit_head, video_prefix, video_views

    torch.manual_seed(0)
    model, info = load_torch_model(args.like)
    model = model.float().eval()
    feats, labels, weights, counts = [], [], [], {}
    for prefix in args.videos:
        crops, y = video_views(prefix, info.class_names, args.frames, args.step, forbidden_images=Path(args.data))
        feats.append(penultimate(model, info, crops))
        labels.append(y)
        weights.append(np.ones(len(y), np.float32))
        counts[video_prefix(prefix)] = len(y)
        print(f"{prefix}: {len(y)} views", file=sys.stderr, flush=True)
    if args.photos:
        photos = photo_set(scan_split(args.photos, info.class_names))  # an unreadable photo: named, exit 2
        feats.append(penultimate(model, info, photos.crops))
        labels.append(photos.labels.astype(np.int64))
        weights.append(np.full(len(photos.labels), args.photo_weight, np.float32))
        counts[str(args.photos)] = len(photos.labels)
    head = model.get_classifier()
    w, b = refit_head(head.weight.detach().float().numpy(), head.bias.detach().float().numpy(),
                      np.concatenate(feats), np.concatenate(labels), np.concatenate(weights), l2=args.l2)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w))
        head.bias.copy_(torch.from_numpy(b))
    name = args.name or info.name
    base = {"version": info.version, **{k: v for k, v in (info.metrics.get("temperature_fit") or {}).items()
                                        if k in ("averaged_from", "head_refit")}}
    info = info.model_copy(update={"name": name, "version": f"{info.version}-headrefit", "metrics": {}})
    metrics = save_recalibrated(model, info, args.out, args.data, args.train_dir, args.belt_per_photo, args.belt_seed,
                                provenance={"head_refit": {"from": str(args.like), "base": base, "views": counts,
                                                           "frames": args.frames, "step": args.step, "l2": args.l2,
                                                           "photo_weight": args.photo_weight}})
    print(json.dumps({"temperature_fit": metrics["temperature_fit"], "val": metrics["val"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
