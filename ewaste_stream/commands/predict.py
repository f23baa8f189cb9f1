"""ewaste-stream predict PATH... : classify images (or folders of images) with a model folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "classify images or folders of images (one line per image; --json for JSON lines)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: models/default)")
    p.add_argument("--json", action="store_true", help='JSON lines: {"path","label","confidence","top"}')
    p.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=2, help="CPU inference threads (default 2)")
    p.add_argument("--batch", type=int, default=16, help="images per inference batch (default 16)")
    p.add_argument("--top", type=int, default=3, help="how many classes to list (default 3)")


def run(args: argparse.Namespace) -> int:
    from ..config import DEFAULT_MODEL_DIR
    from ..model import ModelLoadError, load_classifier
    from ..model.predict import predict_files

    if args.batch < 1 or args.threads < 1 or args.top < 1:
        print("error: --batch, --threads and --top must be >= 1", file=sys.stderr)
        return 2
    try:
        clf = load_classifier(args.model or DEFAULT_MODEL_DIR, backend=args.backend, device=args.device,
                              threads=args.threads)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for res in predict_files(clf, args.paths, batch=args.batch, top=args.top):
        if not res.ok:
            failed += 1
            print(f"{res.path}: error: {res.error}", file=sys.stderr)
            if args.json:
                print(json.dumps(res.to_json()), flush=True)
            continue
        if args.json:
            print(json.dumps(res.to_json()), flush=True)
        else:
            tops = ", ".join(f"{lab} {p:.3f}" for lab, p in res.top)
            print(f"{res.path}\t{res.label}\t{res.confidence:.3f}\ttop: {tops}", flush=True)
    if failed:
        print(f"{failed} file(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0
