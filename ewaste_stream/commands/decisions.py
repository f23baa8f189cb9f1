"""ewaste-stream decisions --since-seq N: print logged decisions after a point (bridge catch-up)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "print decisions from the JSONL log after --since-seq N (and --boot-id ID): catch-up for a restarted bridge"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since-seq", type=int, default=0, metavar="N", help="print decisions with seq > N (default 0)")
    p.add_argument("--boot-id", metavar="ID", help="the boot the seq belongs to; later boots follow in full "
                   "(default: the newest boot in the log)")
    p.add_argument("--log", type=Path, metavar="PATH", help="decision log (default: publish.decisions_log of --config)")
    p.add_argument("--config", type=Path, help="config to take the log path from (default: config/default.yaml)")


def run(args: argparse.Namespace) -> int:
    from ..config import DEFAULT_CONFIG, ConfigError, load_config
    from ..decision_log import BootNotFound, log_files, read_decisions

    if args.since_seq < 0:
        print("error: --since-seq must be >= 0", file=sys.stderr)
        return 2
    path = args.log
    if path is None:
        try:
            path = load_config(args.config or DEFAULT_CONFIG).publish.decisions_log
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if path is None:
            print("error: the config has no publish.decisions_log; pass --log PATH", file=sys.stderr)
            return 2
    if not log_files(path):
        print(f"error: no decision log at {path}", file=sys.stderr)
        return 1

    def bad(f: Path, n: int, why: str) -> None:
        print(f"warning: {f}:{n}: skipped ({why})", file=sys.stderr)

    n = 0
    try:
        for obj in read_decisions(path, args.since_seq, args.boot_id, on_bad=bad):
            sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
            n += 1
    except BootNotFound:
        print(f"error: boot {args.boot_id} is not in {path} (or its rotated files); it may have rotated away. "
              "Run without --boot-id for the newest boot.", file=sys.stderr)
        return 1
    sys.stdout.flush()
    print(f"{n} decision(s)", file=sys.stderr)
    return 0
