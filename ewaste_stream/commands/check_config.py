"""ewaste-stream check-config FILE: validate a config and exit (0 ok, 2 with the key and line)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "validate a YAML config (schema, bounds, paths) and exit: 0 ok, 2 with the bad key and YAML line"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, metavar="FILE", help="YAML config to check")
    p.add_argument("--no-paths", action="store_true", help="schema only: do not check that the model folder, "
                   "video files and key files exist (e.g. checking a config for another machine)")


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError, check_paths, load_config, yaml_key_lines
    from ..sources.spec import parse_source

    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = [] if args.no_paths else check_paths(cfg, yaml_key_lines(args.file))
    if problems:
        body = "\n".join(f"  {p}" for p in problems)
        print(f"error: {args.file}: {len(problems)} problem(s)\n{body}", file=sys.stderr)
        return 2
    cams = ", ".join(f"{c.id}={parse_source(str(c.source)).redacted()}" for c in cfg.cameras)  # no stream passwords
    print(f"ok: {args.file}: line {cfg.line}, cameras {cams}, publish {cfg.publish.endpoint}, "
          f"config sha {cfg.sha256()}")
    return 0
