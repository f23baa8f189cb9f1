#!/usr/bin/env python
"""Refit a model folder's classifier head on crops of simulated belt videos of the train photos.

The backbone stays; the head is refitted on what the camera sees (``ewaste_stream/training/head_refit.py``),
the temperature is refitted on the leak-free val photos + belt crops and the folder written like
``tools/average_checkpoints.py`` does. ``--views pipeline`` (the default) replays each video through the
pipeline with the ``--like`` model and the shipped config and fits on the very crops it classifies (its
views, the other items painted out), labelled with the item each track was decided as; ``--views line``
cuts crops at the ground truth's boxes instead. Export the int8 graph and measure it before shipping it:

    for s in 901 902 903 904 905 906 907 908; do python tools/make_belt_video.py --images ../shared/datasets/ewaste/train \\
        --out runs/tr/t$s/belt --seconds 20 --fps 60 --size 1280x720 --rate 35 --seed $s; done
    for s in 921 922 923 924; do python tools/make_belt_video.py --images ../shared/datasets/ewaste/train \\
        --out runs/tr360/t$s/belt --seconds 20 --fps 30 --size 640x360 --rate 20 --seed $s; done
    python tools/refit_head.py --like BASE --videos runs/tr/t90[1-8]/belt.cam0.mp4 runs/tr360/t92*/belt.cam0.mp4 \\
        --photos ../shared/datasets/ewaste/train --out runs/refitpv \\
        --data ../shared/datasets/ewaste/val --train-dir ../shared/datasets/ewaste/train
    ewaste-stream export runs/refitpv --format onnx-int8 --calib ../shared/datasets/ewaste/train

``--top-blocks K`` also trains the last K block stages and ``conv_head`` of an EfficientNet-style model with the
head (AdamW, 4 epochs, L2 toward the start; the stages below stay, their output is cached once). The shipped model
is the session 23 folder with ``--top-blocks 2`` (models/README.md, "Top blocks tuned on the pipeline's views"):

    python tools/refit_head.py --like runs/refitpv2 --videos runs/tr/t90[1-8]/belt.cam0.mp4 runs/tr360/t92*/belt.cam0.mp4 \
        --photos ../shared/datasets/ewaste/train --out runs/top2 --top-blocks 2 \
        --data ../shared/datasets/ewaste/val --train-dir ../shared/datasets/ewaste/train

where runs/refitpv2 is models/default as of commit 56e5abb (``git worktree add /tmp/s23 56e5abb``).

The session 23 head was made in two such steps (models/README.md, "Head refitted on belt-video crops"): BASE is
models/default as of a180739 (``git worktree add /tmp/base a180739``: /tmp/base/models/default), itself refitted
with ``--views line`` from the soup of commit 120cc5f. It was refitted before ``batching.flip_below`` existed: pass
``--config`` a file with ``batching: {flip_below: null}`` to replay the videos as it did.
"""

from __future__ import annotations

import argparse
import json
import re
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
    ap.add_argument("--views", choices=("pipeline", "line"), default="pipeline",
                    help="pipeline (default): the crops the pipeline classifies when it replays the video with the "
                         "--like model and --config (its views, the other items painted out), labelled "
                         "via the scorer's matching; line: crops cut at the ground truth's boxes, at the line and "
                         "earlier (--frames, --step), as the session 21 head was fitted")
    ap.add_argument("--config", default=None, help="--views pipeline: the YAML config the replays run with (default: "
                                                   "the built-in defaults)")
    ap.add_argument("--frames", type=int, default=2,
                    help="--views line: views per item, at the line and earlier (default 2)")
    ap.add_argument("--step", type=int, default=10, help="--views line: frames between an item's views (default 10)")
    ap.add_argument("--l2", type=float, default=None,
                    help="pull of the refitted weights toward the old ones (default 0.1 for the head alone, 0.01 "
                         "with --top-blocks)")
    ap.add_argument("--top-blocks", type=int, default=0, metavar="K",
                    help="also train the last K block stages and conv_head of an EfficientNet-style model with the "
                         "head (AdamW on the cached output of the stages below; default 0: the head alone, L-BFGS)")
    ap.add_argument("--epochs", type=int, default=4, help="--top-blocks: epochs (default 4)")
    ap.add_argument("--lr", type=float, default=2e-4, help="--top-blocks: peak learning rate (default 2e-4)")
    ap.add_argument("--out", required=True, help="model folder to write (may not be the --like folder)")
    add_recalibration_flags(ap, name_default="the --like folder's")
    args = ap.parse_args(argv)
    if Path(args.out).resolve() == Path(args.like).resolve():
        ap.error("--out must be another folder than --like")
    if args.l2 is None:
        args.l2 = 0.01 if args.top_blocks else 0.1
    if args.frames < 1 or args.step < 1 or args.l2 < 0 or args.photo_weight < 0:
        ap.error("--frames and --step must be >= 1, --l2 and --photo-weight >= 0")
    if args.top_blocks < 0 or args.epochs < 1 or args.lr <= 0:
        ap.error("--top-blocks must be >= 0, --epochs >= 1 and --lr > 0")
    return run_tool(run, args)  # a bad folder, video or photo: named, exit 2, no traceback


def refit_version(version: str, tag: str = "headrefit") -> str:
    """The version of a refitted model: ``v`` -> ``v-headrefit``, ``v-headrefit`` -> ``v-headrefit2``,
    ``v-headrefitN`` -> ``v-headrefit<N+1>`` (a refit of a refit does not stack suffixes); ``tag``
    names the kind of refit (``top2blocks`` for two block stages tuned too)."""
    m = re.fullmatch(rf"(.*-{re.escape(tag)})(\d*)", version)
    return f"{version}-{tag}" if m is None else f"{m.group(1)}{int(m.group(2) or 1) + 1}"


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ewaste_stream.model import load_torch_model
    from ewaste_stream.training.data import scan_split
    from ewaste_stream.training.datasets import photo_set
    from ewaste_stream.training.finalize import save_recalibrated
    from ewaste_stream.training.head_refit import (below_top, penultimate, pipeline_views, refit_head, top_modules,
                                                   tune_top, video_prefix, video_views)

    torch.manual_seed(0)
    model, info = load_torch_model(args.like)
    model = model.float().eval()
    top = args.top_blocks
    if top:
        try:
            top_modules(model, top)  # a model without top blocks is refused before any video is replayed
        except ValueError as exc:
            print(f"error: --top-blocks: {exc}", file=sys.stderr)
            return 2

    def features(crops):  # noqa: ANN001, ANN202 - what the refit trains on: the top stages' input, or the head's
        return below_top(model, info, crops, top) if top else penultimate(model, info, crops)
    if args.views == "pipeline":
        from ewaste_stream.config import ConfigError, load_config
        from ewaste_stream.model import classifier_from_config

        try:
            config = load_config(args.config)  # default: the shipped defaults, as `ewaste-stream replay` runs them
        except ConfigError as exc:
            print(f"error: --config: {exc}", file=sys.stderr)
            return 2
        config = config.model_copy(update={"model": config.model.model_copy(update={"dir": Path(args.like)})})
        classifier = classifier_from_config(config)  # the runtime the line runs: it picks the views

        def cut(prefix: str):  # noqa: ANN202
            return pipeline_views(prefix, config, classifier, forbidden_images=Path(args.data))
    else:
        def cut(prefix: str):  # noqa: ANN202
            return video_views(prefix, info.class_names, args.frames, args.step, forbidden_images=Path(args.data))
    feats, labels, weights, counts = [], [], [], {}
    for prefix in args.videos:
        crops, y = cut(prefix)
        feats.append(features(crops))
        labels.append(y)
        weights.append(np.ones(len(y), np.float32))
        counts[video_prefix(prefix)] = len(y)
        print(f"{prefix}: {len(y)} views", file=sys.stderr, flush=True)
    if args.photos:
        photos = photo_set(scan_split(args.photos, info.class_names))  # an unreadable photo: named, exit 2
        feats.append(features(photos.crops))
        labels.append(photos.labels.astype(np.int64))
        weights.append(np.full(len(photos.labels), args.photo_weight, np.float32))
        counts[str(args.photos)] = len(photos.labels)
    if top:
        tune_top(model, np.concatenate(feats), np.concatenate(labels), top, np.concatenate(weights), lr=args.lr,
                 epochs=args.epochs, l2=args.l2, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    else:
        head = model.get_classifier()
        w, b = refit_head(head.weight.detach().float().numpy(), head.bias.detach().float().numpy(),
                          np.concatenate(feats), np.concatenate(labels), np.concatenate(weights), l2=args.l2)
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(w))
            head.bias.copy_(torch.from_numpy(b))
    name = args.name or info.name
    base = {"version": info.version, **{k: v for k, v in (info.metrics.get("temperature_fit") or {}).items()
                                        if k in ("averaged_from", "head_refit")}}
    version = refit_version(info.version, f"top{top}blocks" if top else "headrefit")
    info = info.model_copy(update={"name": name, "version": version, "metrics": {}})
    refit = {"from": str(args.like), "base": base, "views": counts, "cut": args.views,
             **({"frames": args.frames, "step": args.step} if args.views == "line" else {}),
             **({"config": str(args.config)} if args.config and args.views == "pipeline" else {}),
             "l2": args.l2, "photo_weight": args.photo_weight,
             **({"top_blocks": top, "epochs": args.epochs, "lr": args.lr} if top else {})}
    metrics = save_recalibrated(model, info, args.out, args.data, args.train_dir, args.belt_per_photo, args.belt_seed,
                                provenance={"head_refit": refit})
    print(json.dumps({"temperature_fit": metrics["temperature_fit"], "val": metrics["val"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
