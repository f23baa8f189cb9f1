"""``ewaste-stream analyse``: model analysis report (Grad-CAM, embeddings, reject thresholds,
confusion, worst errors) on a labelled folder, and/or a report on a decision log."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "analyse a model on labelled images (and/or a decision log) into an HTML report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..config import DEFAULT_MODEL_DIR

    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, metavar="DIR",
                   help="model folder (default: the shipped models/default)")
    p.add_argument("--data", type=Path, metavar="DIR", help="labelled images: DIR/<Class>/*.jpg")
    p.add_argument("--out", type=Path, required=True, metavar="REPORT_DIR",
                   help="report folder: index.html, report.json, img/")
    p.add_argument("--video", type=Path, metavar="DECISIONS.jsonl",
                   help="also (or only) report on a decision log: counts, rejects, latency, seq gaps")
    p.add_argument("--gt", type=Path, metavar="PREFIX.gt.jsonl",
                   help="with --video: ground truth of a simulated video; scores the log and measures the "
                        "voting thresholds on the fused decisions")
    p.add_argument("--fps", type=float, help="with --gt: video fps (default: from PREFIX.meta.json beside it)")
    p.add_argument("--target-layer", metavar="NAME", help="Grad-CAM layer (a name from model.named_modules())")
    p.add_argument("--per-class", type=int, default=3, metavar="N", help="Grad-CAM images per class (default 3)")
    p.add_argument("--max-errors", type=int, default=60, metavar="N",
                   help="Grad-CAM on at most N misclassified images, most confident first (default 60)")
    p.add_argument("--target-accuracy", type=float, default=0.98, metavar="A",
                   help="accepted accuracy the recommended reject thresholds must reach (default 0.98)")
    p.add_argument("--train-dir", type=Path, metavar="DIR",
                   help="training folder: images of --data with an exact or dHash<=3 copy there are also "
                        "reported apart (leak-free metrics and thresholds), as in evaluate")
    p.add_argument("--config", type=Path, metavar="YAML",
                   help="daemon config whose vote thresholds are evaluated too (default: config/default.yaml)")
    p.add_argument("--belt-crops", action="store_true",
                   help="show the model simulated belt crops of the photos (the domain the line sees)")
    p.add_argument("--no-embed", action="store_true", help="skip the t-SNE/UMAP maps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")


def _vote_thresholds(path: Path | None) -> tuple[float, float]:
    from ..config import DEFAULT_CONFIG, load_config

    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    vote = load_config(path).vote
    return vote.min_confidence, vote.min_margin


def _model_report(args: argparse.Namespace, video_link: bool) -> None:
    import torch

    from ..analysis.model_report import AnalyseOptions, analyse_model
    from ..analysis.uncertainty import Recommendation

    torch.set_num_threads(max(1, args.threads))
    opts = AnalyseOptions(per_class=args.per_class, max_errors=args.max_errors, target_layer=args.target_layer,
                          target_accuracy=args.target_accuracy, batch_size=args.batch_size, seed=args.seed,
                          embed=not args.no_embed, belt_crops=args.belt_crops,
                          vote_thresholds=_vote_thresholds(args.config), train_dir=args.train_dir)
    numbers = analyse_model(args.model, args.data, args.out, opts, extra_links=(
        [("Decision log report", "decisions.html")] if video_link else []))
    m = numbers["metrics"]
    print(f"accuracy {m['accuracy']:.4f}  macro-F1 {m['macro']['f1']:.4f}  ECE {m['ece']:.4f}  "
          f"({m['n']} images, {numbers['data']['views']})")
    for rec in numbers["uncertainty"]["recommended"].values():
        print("recommended", Recommendation(**rec).describe())
    c = numbers["uncertainty"]["at_config"]
    acc = "n/a" if c["accuracy"] is None else f"{c['accuracy']:.2%}"
    print(f"configured vote.min_confidence {c['min_confidence']:g} + vote.min_margin {c['min_margin']:g}: "
          f"accepted accuracy {acc}, reject rate {c['reject_rate']:.1%}")
    lf = numbers["leak_free"]
    if lf and "metrics" in lf:
        print(f"leak-free ({lf['n']} images, {numbers['leaks']['n']} with a copy in {args.train_dir} left out): "
              f"accuracy {lf['metrics']['accuracy']:.4f}  macro-F1 {lf['macro_f1']:.4f}  ECE {lf['metrics']['ece']:.4f}")
        for rec in lf["uncertainty"]["recommended"].values():
            print("  recommended (leak-free)", Recommendation(**rec).describe())
    print(f"report: {args.out / 'index.html'}")


def _decision_report(args: argparse.Namespace) -> None:
    from ..analysis.decisions_report import GroundTruth, decisions_report
    from ..analysis.uncertainty import Recommendation

    gt = GroundTruth.read(args.gt, args.fps) if args.gt is not None else None
    s = decisions_report(args.video, args.out, "decisions.html" if args.data else "index.html", gt,
                         args.target_accuracy)
    print(f"decisions {s['decisions']}  rejects {s['reject_rate']:.1%}  "
          f"latency p95 {s['latency_s']['p95']:.3f} s  bad lines {s['bad_lines']}")
    g = s.get("ground_truth")
    if g is not None:
        sc = g["score"]
        pct = lambda v: "n/a" if v is None else f"{v:.1%}"  # noqa: E731
        print(f"vs ground truth: matched {sc['matched']}/{sc['items']}  accepted accuracy "
              f"{pct(sc['accuracy_accepted'])}  reject rate {pct(sc['reject_rate'])}  "
              f"top label right {pct(g.get('top_label_accuracy'))}")
        for rec in g["recommended"].values():
            print("recommended (fused decisions)", Recommendation(**rec).describe())


def run(args: argparse.Namespace) -> int:
    from loguru import logger

    from ..analysis.decisions_report import DecisionLogError
    from ..analysis.gradcam import TargetLayerError
    from ..config import ConfigError
    from ..model.weights import ModelLoadError
    from ..training.data import DatasetError

    if args.gt is not None and args.video is None:
        logger.error("--gt needs --video DECISIONS.jsonl (the log to score)")
        return 2
    if args.data is None and args.video is None:
        logger.error("give --data DIR (labelled images) and/or --video DECISIONS.jsonl")
        return 2
    if args.per_class < 0 or args.max_errors < 0 or args.batch_size < 1 or not 0 < args.target_accuracy <= 1:
        logger.error("--per-class/--max-errors must be >= 0, --batch-size >= 1, --target-accuracy in (0, 1]")
        return 2
    try:
        if args.video is not None:
            _decision_report(args)
        if args.data is not None:
            _model_report(args, video_link=args.video is not None)
    except (ModelLoadError, DatasetError, TargetLayerError, DecisionLogError, ConfigError) as exc:
        logger.error("{}", exc)
        return 2
    return 0
