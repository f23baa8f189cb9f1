"""ewaste-stream run: the live daemon (sources -> pipeline -> decision log + ZeroMQ)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "run the live daemon: cameras/streams/files -> decisions on ZeroMQ + JSONL log (SIGTERM drains)"
_OFF = ("none", "off", "null", "")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: config/default.yaml)")
    p.add_argument("--source", action="append", default=[], metavar="[ID=]SRC",
                   help="camera index, /dev/videoN, rtsp://..., http(s)://... or a video file; repeat for "
                        "several cameras (replaces the config's cameras; ID defaults to cam0, cam1, ...)")
    p.add_argument("--publish", metavar="ENDPOINT", help="ZeroMQ PUB bind address, e.g. tcp://0.0.0.0:5556 (none: off)")
    p.add_argument("--decisions-log", metavar="PATH", help="JSONL decision log (none: off)")
    p.add_argument("--metrics", metavar="HOST:PORT", help="health/metrics HTTP endpoint (none: off)")
    p.add_argument("--loop", action="store_true", help="file sources start again at the end")
    p.add_argument("--model", type=Path, help="model folder (default: the config's, else models/default)")


def _off(v: str | None) -> str | None:
    return None if v is None or v.strip().lower() in _OFF else v


def build_overrides(args: argparse.Namespace, cameras: list[Any]) -> dict[str, Any]:
    """Command-line flags -> nested config overrides (flags win over the file)."""
    ov: dict[str, Any] = {}
    if args.source:
        by_id = {c.id: c for c in cameras}
        cams = []
        for i, raw in enumerate(args.source):
            cid, sep, src = raw.partition("=")
            if not sep or "://" in cid or "/" in cid:
                cid, src = f"cam{i}", raw
            base = by_id[cid].model_dump(mode="json", exclude_unset=True) if cid in by_id else {}
            cams.append({**base, "id": cid, "source": src, **({"loop": True} if args.loop else {})})
        ov["cameras"] = cams
    elif args.loop:
        ov["cameras"] = [{**c.model_dump(mode="json", exclude_unset=True), "loop": True} for c in cameras]
    if args.publish is not None:
        ov.setdefault("publish", {})["endpoint"] = _off(args.publish)
    if args.decisions_log is not None:
        ov.setdefault("publish", {})["decisions_log"] = _off(args.decisions_log)
    if args.metrics is not None:
        ov["metrics"] = {"listen": _off(args.metrics)}
    if args.model is not None:
        ov["model"] = {"dir": str(args.model)}
    return ov


def run(args: argparse.Namespace) -> int:
    from ..config import DEFAULT_CONFIG, ConfigError, check_paths, load_config, yaml_key_lines
    from ..log import setup_logging

    path = args.config or DEFAULT_CONFIG
    try:
        base = load_config(path)
        cfg = load_config(path, build_overrides(args, list(base.cameras)))
        problems = check_paths(cfg, yaml_key_lines(path))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if problems:
        print(f"error: {path}: " + "; ".join(str(p) for p in problems), file=sys.stderr)
        return 2
    setup_logging(verbose=args.verbose, file=cfg.logging.file, rotation=cfg.logging.rotation,
                  retention=cfg.logging.retention)
    return _run_daemon(cfg)


def _run_daemon(cfg: Any) -> int:
    from loguru import logger

    from ..app import Daemon, run_daemon
    from ..model import ModelLoadError, classifier_from_config
    from ..publish import PublishError
    from ..sources import SourceOpenError

    try:
        clf = classifier_from_config(cfg)  # logs device/backend/precision + a timed warm-up batch
    except ModelLoadError as exc:
        logger.error(f"model.dir: {exc}")
        return 2
    try:
        return run_daemon(Daemon(cfg, clf))
    except SourceOpenError as exc:
        logger.error(f"{exc} (set cameras[].on_open_failure: retry to keep retrying instead)")
        return 1
    except (PublishError, OSError) as exc:
        logger.error(str(exc))
        return 1
