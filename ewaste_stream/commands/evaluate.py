"""ewaste-stream evaluate: photo and belt-crop metrics of a model folder, leak-aware."""

from __future__ import annotations

import argparse

HELP = ("evaluate a model folder on DIR/<Class>/ images: accuracy, P/R/F1, confusion, ROC-AUC, ECE; "
        "photos and simulated belt crops side by side, on all images and without those leaked from --train-dir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR", help="eval folder with <Class>/*.jpg (e.g. .../val)")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="model folder (model.json + weights)")
    parser.add_argument("--train-dir", metavar="DIR", help="training folder: eval images with an exact or dHash<=3 "
                        "copy there are reported separately (leak-free figures)")
    parser.add_argument("--belt", action="store_true", help="also render belt crops of every eval photo "
                        "(simulator compositing, fixed seed) and report them side by side")
    parser.add_argument("--belt-per-photo", type=int, default=3, metavar="N", help="belt crops per photo (default 3)")
    parser.add_argument("--belt-seed", type=int, default=20261127, help="seed of the belt crops (default 20261127, "
                        "the same as training's val set)")
    parser.add_argument("--tta", action="store_true", help="also report test-time augmentation over the four "
                        "90-degree rotations (mean of probabilities)")
    parser.add_argument("--video", action="append", default=[], metavar="PREFIX",
                        help="simulated video PREFIX (PREFIX.cam0.mp4 + PREFIX.gt.jsonl): also classify item "
                             "crops cut at each item's line crossing (repeatable)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N images (smoke runs)")
    parser.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto")
    parser.add_argument("--threads", type=int, default=2, help="CPU inference threads (default 2)")
    parser.add_argument("--precision", choices=["auto", "fp32", "int8"], default="auto",
                        help="ONNX graph: auto (int8 on the CPU when the folder has one, as production runs), "
                             "fp32 or int8")
    parser.add_argument("--json", action="store_true", help="print the full JSON report to stdout")
    parser.add_argument("--out", metavar="DIR", help="write eval.json, eval.md, confusion_*.png, misclassified.csv")


def run(args: argparse.Namespace) -> int:
    import json

    from loguru import logger

    from ..model import ModelLoadError
    from ..training.data import DatasetError
    from ..training.evaluation import EvalOptions, evaluate_model, markdown_table, write_outputs

    if args.belt_per_photo < 1 or args.threads < 1 or (args.limit is not None and args.limit < 1):
        logger.error("--belt-per-photo, --threads and --limit must be >= 1")
        return 2
    opts = EvalOptions(data=args.data, model=args.model, train_dir=args.train_dir,
                       belt_per_photo=args.belt_per_photo if args.belt else 0, belt_seed=args.belt_seed,
                       tta=args.tta, videos=tuple(args.video), limit=args.limit, backend=args.backend,
                       threads=args.threads, precision=args.precision)
    try:
        doc = evaluate_model(opts)
    except (DatasetError, ModelLoadError, FileNotFoundError) as exc:
        logger.error("{}", exc)
        return 2
    if args.out:
        write_outputs(args.out, doc["reports"], doc["class_names"], doc["leaks"], doc["summary"])
        logger.info("wrote {}", args.out)
    if args.json:
        print(json.dumps({"summary": doc["summary"], "reports": doc["reports"],
                          "leaks": [lk.to_dict() for lk in doc["leaks"]]}, indent=1))
    else:
        print(markdown_table(doc["reports"]))
    return 0
