#!/usr/bin/env python
"""Micro-benchmark of the classifier: img/s and per-batch latency (p50/p99) per backend,
device and batch size. Timings include preprocessing (resize + normalise), as in production.

    python tools/bench_infer.py models/default --backend onnx torch --device cpu --batch 1 8 32
    python tools/bench_infer.py maxvit_tiny_tf_224 --backend onnx --batch 8   # random weights
    python tools/bench_infer.py maxvit_tiny_tf_224 --backend torch --device cuda --precision bf16 \
        --compile --channels-last --batch 1 8 32 128 --max-seconds 2 --json out.jsonl

A timm architecture name instead of a folder builds the model with random weights and
saves it (with ONNX) to a temporary folder first. Figures depend on what else runs on the
machine: on shared cores, say so when you quote them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="model folder, or a timm architecture name (random weights)")
    ap.add_argument("--backend", nargs="+", choices=("onnx", "torch"), default=["onnx"])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--threads", type=int, default=2, help="CPU inference threads")
    ap.add_argument("--iters", type=int, default=30, help="timed batches per setting (at most)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=20.0, help="stop a setting after this long (min 3 batches)")
    ap.add_argument("--crop", type=int, default=None, help="crop side in px (default: model input size)")
    ap.add_argument("--channels-last", action="store_true", help="torch backend: channels_last")
    ap.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16", "int8"), default="auto",
                    help="torch backend on CUDA: autocast dtype (auto = fp16; the CPU runs fp32); ONNX backend: "
                         "int8 or fp32 graph (auto = int8 on the CPU when the folder has one)")
    ap.add_argument("--compile", action="store_true",
                    help="torch backend: torch.compile, warmed up for every --batch size before timing")
    ap.add_argument("--compile-mode", choices=("default", "reduce-overhead", "max-autotune-no-cudagraphs"),
                    default="default")
    ap.add_argument("--json", type=Path, default=None, help="append one JSON object per setting to this file")
    return ap.parse_args(argv)


def resolve_model(spec: str, backends: list[str], workdir: Path) -> Path:
    """A model folder as is; an architecture name -> random-weight folder in ``workdir``."""
    if Path(spec).is_dir():
        return Path(spec)
    from ewaste_stream import CLASS_NAMES
    from ewaste_stream.model import ModelInfo, create_model, save_model_folder

    model = create_model(spec, len(CLASS_NAMES))
    info = ModelInfo.for_model(model, f"{spec}-random", CLASS_NAMES, arch=spec)
    return save_model_folder(workdir / spec, model, info, export_onnx="onnx" in backends)


def time_setting(clf, crops: list[np.ndarray], warmup: int, iters: int, max_seconds: float) -> dict:
    for _ in range(warmup):
        clf.predict(crops)
    lat = []
    start = time.perf_counter()
    while len(lat) < iters and (len(lat) < 3 or time.perf_counter() - start < max_seconds):
        t0 = time.perf_counter()
        clf.predict(crops)
        lat.append(time.perf_counter() - t0)
    a = np.asarray(lat)
    return {"img_s": len(crops) * len(a) / a.sum(), "p50_ms": 1e3 * np.percentile(a, 50),
            "p99_ms": 1e3 * np.percentile(a, 99), "n": len(a)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from ewaste_stream.model import AccelOptions, ModelLoadError, load_classifier

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"# host: {platform.node()} cpus={os.cpu_count()} threads={args.threads} torch={torch.__version__} "
          f"cuda={torch.cuda.is_available()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_infer_") as tmp:
        try:
            model_dir = resolve_model(args.model, args.backend, Path(tmp))
        except ModelLoadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{'model':<28} {'backend':<12} {'device':<6} {'batch':>5} {'img/s':>8} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'n':>4}", flush=True)
        for backend in args.backend:
            accel = AccelOptions(precision=args.precision, compile=args.compile, compile_mode=args.compile_mode,
                                 channels_last=args.channels_last, batch_sizes=tuple(sorted(set(args.batch))),
                                 max_batch=max(args.batch))
            t0 = time.perf_counter()
            clf = load_classifier(model_dir, backend=backend, device=args.device, threads=args.threads,
                                  channels_last=args.channels_last, accel=accel)
            load_s = time.perf_counter() - t0
            side = args.crop or clf.info.input_size
            for b in args.batch:
                crops = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(b)]
                r = time_setting(clf, crops, args.warmup, args.iters, args.max_seconds)
                ran = f"{backend}/{getattr(clf, 'precision', 'fp32')}"
                print(f"{clf.info.arch:<28} {ran:<12} {args.device:<6} {b:>5} {r['img_s']:>8.1f} "
                      f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['n']:>4}", flush=True)
                if args.json is not None:
                    write_json(args.json, clf, backend, args, {"batch": b, "crop": side, "load_s": load_s, **r})
    return 0


def write_json(path: Path, clf, backend: str, args: argparse.Namespace, result: dict) -> None:  # noqa: ANN001
    """One JSON line per setting: what ran (device name, precision, compiled ...) + figures."""
    import json

    from ewaste_stream.model.selfcheck import describe_device

    row = {"arch": clf.info.arch, "backend": backend, "device": str(clf.device),
           "device_name": describe_device(str(clf.device)), "provider": getattr(clf, "provider", None),
           "precision": getattr(clf, "precision", "fp32"), "precision_asked": args.precision, "compiled": bool(getattr(clf, "compiled", False)),
           "compile_mode": args.compile_mode if getattr(clf, "compiled", False) else None,
           "channels_last": bool(getattr(clf, "channels_last", False)),
           **{k: (round(float(v), 3) if isinstance(v, (float, np.floating)) else v) for k, v in result.items()}}
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    sys.exit(main())
