"""ewaste-stream listen ENDPOINT: the reference subscriber (starting point of a PLC bridge).

Prints each decision; reports seq gaps, daemon restarts (boot changes) and heartbeat loss
on stderr. See docs/WIRE.md for the wire format and a PLC-bridge example.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

HELP = "subscribe to decisions: print them, report seq gaps, daemon restarts and heartbeat loss"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("endpoint", metavar="ENDPOINT", help="daemon's PUB address, e.g. tcp://10.0.0.5:5556")
    p.add_argument("--line", help="only this line id (default: every line on the endpoint)")
    p.add_argument("--json", action="store_true", help="decisions as JSON lines on stdout, notices as JSON on stderr")
    p.add_argument("--heartbeats", action="store_true", help="print heartbeats too")
    p.add_argument("--curve-server-public", type=Path, metavar="F", help="server's public key file (CURVE)")
    p.add_argument("--curve-secret", type=Path, metavar="F", help="this client's .key_secret file (CURVE)")
    p.add_argument("--heartbeat-timeout", type=float, metavar="S",
                   help="report heartbeat loss after S s of silence (default: 3 heartbeat periods)")
    p.add_argument("--count", type=int, metavar="N", help="exit after N decisions")
    p.add_argument("--duration", type=float, metavar="S", help="exit after S seconds")
    p.add_argument("--summary", type=Path, metavar="FILE", help="write a JSON summary (counts, gaps) at exit")


def _describe(d) -> str:  # noqa: ANN001 (Decision)
    why = f" ({d.reject_reason.value})" if d.reject_reason else ""
    slack = f" deadline {d.deadline - d.t_decided:+.3f} s" if d.deadline is not None else ""
    return (f"{d.line} seq {d.seq:>6} item {d.item_id:>6}  {d.label}{why} {d.confidence:.2f}  "
            f"lane {d.lane} -> {d.actuator}  y {d.y:.2f}  t_cross {d.t_cross:.3f}{slack}")


def run(args: argparse.Namespace) -> int:
    from ..subscriber import CurveClient, DecisionSubscriber

    if (args.curve_server_public is None) != (args.curve_secret is None):
        print("error: CURVE needs both --curve-server-public and --curve-secret", file=sys.stderr)
        return 2
    curve = CurveClient(args.curve_server_public, args.curve_secret) if args.curve_secret else None
    try:
        sub = DecisionSubscriber(args.endpoint, args.line, curve, heartbeat_timeout_s=args.heartbeat_timeout)
    except Exception as exc:  # zmq.ZMQError (bad endpoint), OSError/ValueError (key files)
        print(f"error: cannot subscribe to {args.endpoint}: {exc}", file=sys.stderr)
        return 2
    stop = {"now": False}
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.__setitem__("now", True))
    end = time.monotonic() + args.duration if args.duration else None
    try:
        _loop(sub, args, stop, end)
    finally:
        summary = {"endpoint": args.endpoint, **sub.tracker.stats.__dict__,
                   "boots": {line: st.boot_id for line, st in sub.tracker.lines.items()},
                   "last_seq": {line: st.last_seq for line, st in sub.tracker.lines.items()}}
        sub.close()
        print(f"listen: {summary['decisions']} decisions, {summary['gaps']} gap(s), {summary['missing']} missing, "
              f"{summary['boot_changes']} boot change(s), {summary['heartbeat_losses']} heartbeat loss(es)",
              file=sys.stderr)
        if args.summary:
            args.summary.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


def _loop(sub, args: argparse.Namespace, stop: dict, end: float | None) -> None:  # noqa: ANN001
    n = 0
    while not stop["now"] and (end is None or time.monotonic() < end):
        r = sub.recv(0.2)
        notices = list(r.notices) if r else []
        notices += sub.check()
        for nt in notices:
            print(json.dumps(nt.to_dict()) if args.json else f"[{nt.kind}] {nt.line}: {nt.message}",
                  file=sys.stderr, flush=True)
        if r is None:
            continue
        if r.decision is not None:
            n += 1
            if args.json:
                from ..protocol import encode_decision

                print(encode_decision(r.decision).decode(), flush=True)
            else:
                print(_describe(r.decision), flush=True)
            if args.count and n >= args.count:
                return
        elif r.heartbeat is not None and args.heartbeats:
            hb = r.heartbeat
            print(f"{hb.line} heartbeat last_seq {hb.last_seq} status {hb.status} t {hb.t:.1f}", file=sys.stderr,
                  flush=True)
