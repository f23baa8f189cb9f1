"""ewaste-stream export SRC --format onnx : add a verified ONNX file to a model folder, or
turn a bare checkpoint (.pth/.safetensors state_dict) into a model folder.
``--format onnx-int8 --calib TRAIN_DIR`` adds a checked int8 graph for the CPU (model/quantize.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "export a model folder to ONNX (dynamic batch, verified), or import a bare checkpoint as a model folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", type=Path, metavar="MODEL_DIR_OR_CHECKPOINT",
                   help="model folder (writes MODEL_DIR/model.onnx), or a .pth/.safetensors state_dict")
    p.add_argument("--format", choices=("onnx", "onnx-int8"), default="onnx",
                   help="export format (default onnx); onnx-int8: a statically quantized copy of the folder's "
                        "model.onnx for the CPU, calibrated on --calib")
    p.add_argument("--calib", type=Path, metavar="TRAIN_DIR",
                   help="onnx-int8: a train split (Class/*.jpg); photos and simulated belt crops of it set the "
                        "activation ranges and check the result (use train, not the split you evaluate on)")
    p.add_argument("--calib-per-class", type=int, default=24, help="onnx-int8: photos per class (default 24)")
    p.add_argument("--min-agreement", type=float, default=0.95,
                   help="onnx-int8: refuse the int8 graph when its top-1 agrees with fp32 on fewer check crops "
                        "(default 0.95)")
    p.add_argument("--float-convs", type=int, default=None, metavar="N",
                   help="onnx-int8: leave the graph's first N convolutions (and what lies between them) in float, "
                        "where int8 costs the most accuracy for the least time (default 3; 0: all int8)")
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
        if args.format == "onnx-int8":
            if not args.src.is_dir() or args.calib is None:
                print(f"error: --format onnx-int8 takes a model folder and --calib TRAIN_DIR (got {args.src}, "
                      f"--calib {args.calib})", file=sys.stderr)
                return 2
            from ..model.quantize import FLOAT_CONVS, calibration_crops, fp32_graph, quantize_folder

            float_convs = FLOAT_CONVS if args.float_convs is None else args.float_convs
            if float_convs < 0:
                print(f"error: --float-convs must be >= 0 (got {float_convs})", file=sys.stderr)
                return 2
            info, _ = fp32_graph(args.src)  # before the calibration crops are rendered
            cal, check = calibration_crops(args.calib, info.class_names, per_class=args.calib_per_class)
            out = quantize_folder(args.src, cal, check, min_agreement=args.min_agreement,
                                  describe={"calibration_data": str(args.calib), "per_class": args.calib_per_class},
                                  float_convs=float_convs)
        elif args.src.is_dir():
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
