#!/usr/bin/env python
"""Train several architectures with the same recipe (a short budget) and write a Markdown table:
leak-free val accuracy (photos and belt crops), macro-F1, parameters and CPU ms/img (ONNX Runtime).

    python tools/compare_models.py --data ../shared/datasets/ewaste \\
        --arch tf_efficientnet_lite0:lite0-offline --arch ewaste_small_cnn:none \\
        --epochs 3 --input-size 160 --out runs/compare [--config train.yaml] [-- EXTRA TRAIN FLAGS]

``ARCH:PRETRAINED`` picks the starting weights (none | timm | lite0-offline | PATH; default none).
Everything after ``--`` is passed to every training run as ``ewaste-stream train`` flags.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--arch", action="append", required=True, metavar="ARCH[:PRETRAINED]")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--input-size", type=int, default=160)
    p.add_argument("--config", help="recipe YAML shared by every run")
    p.add_argument("--out", default="runs/compare", help="folder for the runs and compare.md")
    p.add_argument("--bench-batches", type=int, default=20, help="batches of 8 timed per model (default 20)")
    return p.parse_args(argv), extra


def cpu_ms_per_img(model_dir: Path, batches: int) -> float:
    from ewaste_stream.model import load_classifier

    clf = load_classifier(model_dir, backend="onnx", device="cpu", threads=2)
    crops = [np.random.default_rng(i).integers(0, 256, (150, 150, 3), dtype=np.uint8) for i in range(8)]
    clf.predict(crops)  # warm-up
    t = time.perf_counter()
    for _ in range(batches):
        clf.predict(crops)
    return (time.perf_counter() - t) / (batches * 8) * 1000


def train_one(spec: str, args: argparse.Namespace, extra: list[str]) -> dict:
    from ewaste_stream.cli import main
    from ewaste_stream.model import load_torch_model

    arch, _, pretrained = spec.partition(":")
    out = Path(args.out) / arch
    argv = ["train", "--data", args.data, "--arch", arch, "--pretrained", pretrained or "none",
            "--out", str(out / "model"), "--work-dir", str(out / "work"), "--epochs", str(args.epochs),
            "--input-size", str(args.input_size), *(["--config", args.config] if args.config else []), *extra]
    t = time.perf_counter()
    if main(argv) != 0:
        return {"arch": arch, "error": "training failed (see log)"}
    minutes = (time.perf_counter() - t) / 60
    model, info = load_torch_model(out / "model")
    val = info.metrics["val"]
    pick = lambda s: val.get(s, {}).get("single", {}).get("leak_free", {})  # noqa: E731
    return {"arch": arch, "pretrained": pretrained or "none", "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "photo_acc": pick("photo").get("accuracy"), "photo_f1": pick("photo").get("macro_f1"),
            "belt_acc": pick("belt").get("accuracy"), "belt_f1": pick("belt").get("macro_f1"),
            "ece": pick("belt").get("ece"), "cpu_ms": cpu_ms_per_img(out / "model", args.bench_batches),
            "train_min": minutes}


def table(rows: list[dict], args: argparse.Namespace) -> str:
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    lines = [f"Same recipe, {args.epochs} epochs, input {args.input_size}; leak-free val, single view; "
             f"CPU = ONNX Runtime, 2 threads, batch 8.", "",
             "| arch | pretrained | photo acc | photo macro-F1 | belt acc | belt macro-F1 | belt ECE | params (M) "
             "| CPU ms/img | train min |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['arch']} | {r['error']} |")
            continue
        lines.append(f"| {r['arch']} | {r['pretrained']} | {fmt(r['photo_acc'], '.4f')} | {fmt(r['photo_f1'], '.4f')} "
                     f"| {fmt(r['belt_acc'], '.4f')} | {fmt(r['belt_f1'], '.4f')} | {fmt(r['ece'], '.4f')} "
                     f"| {r['params_m']:.2f} | {r['cpu_ms']:.2f} | {r['train_min']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ewaste_stream.log import setup_logging

    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    rows = [train_one(spec, args, extra) for spec in args.arch]
    md = table(rows, args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "compare.md").write_text(md + "\n", encoding="utf-8")
    (Path(args.out) / "compare.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(md)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
