#!/usr/bin/env python
"""Score a decision log (JSONL, wire schema 1) against a simulated video's ground truth.

    python tools/score_decisions.py /tmp/belt20.gt.jsonl decisions.jsonl [--json] [--fps 60]

fps (for the +-3 frame tolerance) and the end of the video come from the PREFIX.meta.json
beside the ground truth; --fps overrides the fps. --json prints one JSON object with the keys
items, decisions, matched, missed, duplicates, phantoms, accuracy_matched, accuracy_all,
reject_rate, accuracy_accepted, top1_matched, seq_gaps, per_class_recall, confusion. Malformed decision
lines are skipped and reported on stderr. Exit 0 ok, 1 unreadable input, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("gt", type=Path, help="PREFIX.gt.jsonl from tools/make_belt_video.py")
    p.add_argument("decisions", type=Path, help="JSONL decision log (one wire-format decision a line)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--fps", type=float, default=None, help="video fps (default: from PREFIX.meta.json)")
    args = p.parse_args(argv)
    from ewaste_stream.cli import reader_gone
    from ewaste_stream.scoring import format_report, meta_beside, read_decisions, read_gt, score_report

    try:
        meta = meta_beside(args.gt) or {}
        fps = args.fps or meta.get("fps")
        if not fps:
            print(f"score_decisions: no {args.gt.name.replace('.gt.jsonl', '.meta.json')} beside the ground "
                  "truth; give --fps", file=sys.stderr)
            return 2
        gt = read_gt(args.gt)
        decisions, bad = read_decisions(args.decisions)
        result, details = score_report(gt, decisions, float(fps), meta.get("t_last_frame"))
    except (OSError, ValueError) as exc:
        print(f"score_decisions: {exc}", file=sys.stderr)
        return 1
    for n, err in bad[:10]:
        print(f"score_decisions: {args.decisions}:{n}: skipped malformed decision: {err}", file=sys.stderr)
    if bad:
        print(f"score_decisions: {len(bad)} malformed line(s) skipped", file=sys.stderr)
    try:
        print(json.dumps(result) if args.json else format_report(result, details))
    except BrokenPipeError:  # `| head`
        return reader_gone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
