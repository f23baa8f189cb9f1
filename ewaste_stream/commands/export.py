"""ewaste-stream export SRC --format onnx : add a verified ONNX file to a model folder, or
turn a bare checkpoint (.pth/.safetensors state_dict) into a model folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "export a model folder to ONNX (dynamic batch, verified), or import a bare checkpoint as a model folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", type=Path, metavar="MODEL_DIR_OR_CHECKPOINT",
                   help="model folder (writes MODEL_DIR/model.onnx), or a .pth/.safetensors state_dict")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (default onnx)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--arch", help="checkpoint import: timm architecture, e.g. maxvit_tiny_tf_224")
    p.add_argument("--classes", help="checkpoint import: class names in output order, comma separated "
                                     "(default: the 10 e-waste classes)")
    p.add_argument("--out", type=Path, help="checkpoint import: model folder to write")
    p.add_argument("--name", help="checkpoint import: model name (default: the file name)")
    p.add_argument("--fp16", action="store_true", help="checkpoint import: store safetensors as float16")


def run(args: argparse.Namespace) -> int:
    from .. import CLASS_NAMES
    from ..model import ModelLoadError
    from ..model.onnx_export import DEFAULT_OPSET, ModelExportError, export_folder_onnx

    opset = args.opset or DEFAULT_OPSET
    try:
        if args.src.is_dir():
            out = export_folder_onnx(args.src, opset=opset)
        elif args.src.is_file():
            if not args.arch or not args.out:
                print(f"error: {args.src} is a checkpoint file: give --arch and --out (and --classes unless "
                      f"it has the {len(CLASS_NAMES)} e-waste classes)", file=sys.stderr)
                return 2
            from ..model import import_checkpoint

            classes = [c.strip() for c in args.classes.split(",")] if args.classes else list(CLASS_NAMES)
            out = import_checkpoint(args.src, args.arch, classes, args.out, name=args.name,
                                    weights_dtype="float16" if args.fp16 else "float32")
        else:
            print(f"error: {args.src}: no such model folder or checkpoint file", file=sys.stderr)
            return 2
    except (ModelLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModelExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0
