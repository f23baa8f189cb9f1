"""ewaste-stream replay: run the pipeline on video files (one file per camera)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = ("run the pipeline on video files (several files = frame-synchronous cameras); deterministic "
        "unless --realtime; prints a summary")


def _setting(text: str) -> str:
    from ..config import setting_arg  # the CLI imports a command's libraries only when it runs

    return setting_arg(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", type=Path, metavar="VIDEO", help="video file(s); file i is camera i")
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: built-in defaults)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", type=_setting,
                   help="change one config key over --config, e.g. vote.min_confidence=0.7 or "
                        "'batching.flips=[\"horizontal\"]' (JSON, else a string; repeatable)")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the config's model.dir)")
    p.add_argument("--out", type=Path, default=None, help="write decisions here, one JSON object a line")
    p.add_argument("--annotate", type=Path, default=None, metavar="OUT.mp4",
                   help="write a video of the first camera with boxes, track ids, votes and the decision line")
    p.add_argument("--ignored-log", type=Path, default=None, metavar="OUT.jsonl",
                   help="write the regions of the detector's mask that the tracker left out, and why, one frame "
                        "a line (what tools/track_failures.py --ignored reads)")
    p.add_argument("--realtime", action="store_true",
                   help="pace the files to their fps and drop frames like a live camera (not deterministic)")
    p.add_argument("--summary-json", type=Path, default=None, help="also write the summary as JSON here")
    p.add_argument("--calibration", type=Path, default=None, metavar="META.json",
                   help="take each camera's image->belt mapping from a simulator meta file (camera i = file i)")


def run(args: argparse.Namespace) -> int:
    from loguru import logger

    from ..config import ConfigError, load_config, settings_overrides
    from ..protocol import encode_decision
    from ..annotate import AnnotateError
    from ..replay import ReplayError, ReplayHooks, ReplayOptions, format_summary, replay_files, summary_json

    try:
        cfg = load_config(args.config, settings_overrides(args.set) or None)
        if args.model is not None:
            cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"dir": args.model})})
        if args.calibration is not None:
            from ..geometry import cameras_from_meta

            cfg = cameras_from_meta(args.calibration, cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"error: --calibration {args.calibration}: {exc}", file=sys.stderr)
        return 2
    classifier = _load_model(cfg)
    if classifier is None:
        return 2
    out = ignored_log = None
    try:
        out = _writable("--out", args.out)
        ignored_log = _writable("--ignored-log", args.ignored_log)

        def write(d) -> None:  # noqa: ANN001
            if out is not None:
                out.write(encode_decision(d).decode() + "\n")

        hooks = ReplayHooks(on_decision=write,
                            on_track_step=None if ignored_log is None else _ignored_writer(ignored_log))
        summary = replay_files(args.videos, cfg, classifier, hooks,
                               ReplayOptions(realtime=args.realtime, annotate=args.annotate))
    except ReplayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except AnnotateError as exc:
        print(f"error: --annotate {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for f in (out, ignored_log):
            if f is not None:
                f.close()
    print(format_summary(summary))
    if args.out is not None:
        logger.info(f"{summary.decisions} decisions written to {args.out}")
    if args.summary_json is not None:
        args.summary_json.write_text(summary_json(summary) + "\n")
    return 1 if summary.errors else 0


def _writable(flag: str, path: Path | None):  # noqa: ANN202
    """``path`` opened for writing (its folder made), None for None; an OSError that names the flag."""
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise OSError(f"{flag} {path}: cannot write there ({exc.strerror or exc}); give a writable path") from exc


def _ignored_writer(f):  # noqa: ANN001, ANN202
    """``on_track_step`` that writes one JSON line per camera frame in which the tracker left regions out."""
    import json

    def write(frame, step) -> None:  # noqa: ANN001
        if step.ignored:
            regions = [{"bbox": [round(v, 1) for v in box], "reason": why.value} for box, why in step.ignored]
            f.write(json.dumps({"camera": frame.camera, "seq": frame.seq, "t": round(frame.t, 6),
                                "regions": regions}) + "\n")

    return write


def _load_model(cfg):  # noqa: ANN001, ANN202
    from ..model import ModelLoadError, classifier_from_config

    try:
        return classifier_from_config(cfg)  # logs device/backend/precision + a timed warm-up batch
    except (ModelLoadError, FileNotFoundError, ValueError) as exc:
        print(f"error: model {cfg.model.dir}: {exc}", file=sys.stderr)
        return None
