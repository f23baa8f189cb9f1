#!/usr/bin/env python
"""Soak test: `ewaste-stream run` on a looping simulated belt video with `listen` attached.

Runs for N minutes and reports RSS (start, end, max), the daemon's CPU (% of one core, after
warm-up and per minute) and what the rest of the machine used meanwhile (so that a soak that
fell behind while something else ran shows it), decisions logged vs published vs
received, seq gaps, frames captured/dropped, and both exit codes. Prints a summary and
writes OUT/soak.json (+ the daemon log, the received decisions, the RSS trace).

    python tools/soak.py --minutes 10 --rate 36 --out runs/soak
    python tools/soak.py --minutes 1 --stub            # daemon plumbing only (stub pipeline)

The video is made once with tools/make_belt_video.py (SIM) unless --video is given.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/datasets/ewaste/val")
STUB_DAEMON = """
import sys
from ewaste_stream.app import Daemon, run_daemon
from ewaste_stream.config import load_config
from ewaste_stream.log import setup_logging
from ewaste_stream.testing import StubClassifier, StubPipeline
cfg = load_config(sys.argv[1])
setup_logging(file=cfg.logging.file)
factory = lambda *a: StubPipeline(*a, every=1)  # one decision per frame
sys.exit(run_daemon(Daemon(cfg, StubClassifier(), pipeline_factory=factory)))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) the process has used, from /proc/PID/stat; None when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has been busy since boot, all cores (``/proc/stat``: user, nice,
    system, irq, softirq and steal time); None where there is no /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, IndexError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields + [0] * (8 - len(fields))
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _at_least_zero(share: dict) -> dict:
    """The kernel counts a process's CPU and the machine's apart, rounded apart: their difference strays
    about a percent of a core below zero on an idle machine. Reported as 0 there."""
    mean = share["mean_after_warmup"]
    return {**share, "mean_after_warmup": None if mean is None else max(0.0, mean),
            "by_minute": [max(0.0, v) for v in share["by_minute"]]}


def cpu_share(samples: list[tuple[float, float | None]], after_s: float) -> dict:
    """CPU in % of one core, from (seconds since launch, CPU seconds used so far) samples: over the
    run from ``after_s`` on (start-up left out), and per minute."""
    pts = [(t, c) for t, c in samples if c is not None]
    warm = [(t, c) for t, c in pts if t >= after_s]
    mean = (100.0 * (warm[-1][1] - warm[0][1]) / (warm[-1][0] - warm[0][0])
            if len(warm) >= 2 and warm[-1][0] > warm[0][0] else None)
    minutes = []
    for m in range(int(pts[-1][0] // 60) if pts else 0):
        w = [(t, c) for t, c in pts if 60 * m <= t <= 60 * (m + 1)]
        if len(w) >= 2 and w[-1][0] > w[0][0]:
            minutes.append(round(100.0 * (w[-1][1] - w[0][1]) / (w[-1][0] - w[0][0]), 1))
    return {"mean_after_warmup": round(mean, 1) if mean is not None else None, "by_minute": minutes,
            "cores": os.cpu_count()}


def make_video(args: argparse.Namespace) -> Path:
    prefix = args.out / "belt"
    video = Path(f"{prefix}.cam0.mp4")
    if video.exists():
        return video
    cmd = [sys.executable, str(REPO / "tools" / "make_belt_video.py"), "--images", str(args.images), "--out",
           str(prefix), "--seconds", str(args.video_seconds), "--rate", str(args.rate), "--size", args.size,
           "--fps", str(args.fps), "--cameras", "1", "--seed", "11"]
    print("making video:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return video


def write_config(args: argparse.Namespace, video: Path, pub_port: int, http_port: int) -> Path:
    import yaml

    data = yaml.safe_load(Path(args.config).read_text()) or {} if args.config else {}
    if args.model:
        data.setdefault("model", {})["dir"] = str(args.model)
    data["cameras"] = [{"id": "cam0", "source": str(video), "loop": True, **({"fps": args.play_fps} if args.play_fps else {})}]
    data.setdefault("publish", {}).update(endpoint=f"tcp://127.0.0.1:{pub_port}",
                                          decisions_log=str(args.out / "decisions.jsonl"))
    data["metrics"] = {"listen": f"127.0.0.1:{http_port}"}
    data.setdefault("logging", {})["file"] = str(args.out / "daemon.log")
    cfg = args.out / "soak.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return cfg


def scrape(http_port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m:
            key = m.group(1) + (m.group(2) or "")
            out[key] = float(m.group(3))
    return out


def metric_sum(metrics: dict[str, float], name: str) -> float:
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


def bucket_counts(metrics: dict[str, float], histogram: str) -> dict[str, int]:
    """A Prometheus histogram's cumulative buckets: ``{"<=0.05": n, ..., "all": n}``."""
    out = {}
    for k, v in metrics.items():
        if k.startswith(histogram + "_bucket{"):
            le = k.split('le="', 1)[1].split('"', 1)[0]
            out["all" if le == "+Inf" else f"<={float(le):g}"] = int(v)
    return out


def age_counts(metrics: dict[str, float]) -> dict[str, int]:
    """Decisions published within each bucket of the daemon's ``ewaste_decision_age_seconds``
    (clock at publish time - line crossing, backlog included)."""
    return bucket_counts(metrics, "ewaste_decision_age_seconds")


def behind_episodes(log: str) -> dict[str, int]:
    """The daemon's "health degraded: ..." lines (it falls behind): how many, by cause."""
    out = {"episodes": 0, "frames_dropped": 0, "late_decisions": 0}
    for line in log.splitlines():
        if "health degraded: " in line:
            out["episodes"] += 1
            out["frames_dropped"] += "frames in the last" in line
            out["late_decisions"] += "after their actuator deadline" in line
    return out


def run_soak(args: argparse.Namespace) -> dict:
    args.out.mkdir(parents=True, exist_ok=True)
    video = Path(args.video) if args.video else make_video(args)
    meta_path = Path(str(video).replace(".cam0.mp4", ".meta.json"))
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    pub_port, http_port = free_port(), free_port()
    cfg = write_config(args, video, pub_port, http_port)
    for f in ("decisions.jsonl", "received.jsonl", "listen.json"):
        (args.out / f).unlink(missing_ok=True)
    endpoint = f"tcp://127.0.0.1:{pub_port}"
    # listen first: ZeroMQ connects as soon as the daemon binds
    listen = subprocess.Popen(["ewaste-stream", "listen", endpoint, "--json", "--summary", str(args.out / "listen.json")],
                              stdout=open(args.out / "received.jsonl", "w"), stderr=open(args.out / "listen.err", "w"))
    daemon_cmd = ([sys.executable, "-c", STUB_DAEMON, str(cfg)] if args.stub
                  else ["ewaste-stream", "run", "--config", str(cfg)])
    t0 = time.monotonic()
    daemon = subprocess.Popen(daemon_cmd, stderr=open(args.out / "daemon.err", "w"), cwd=REPO)
    trace = []  # (seconds since launch, daemon RSS MB, daemon CPU s, whole machine's busy CPU s)
    end = t0 + args.minutes * 60
    while time.monotonic() < end and daemon.poll() is None:
        trace.append((round(time.monotonic() - t0, 1), rss_mb(daemon.pid), cpu_s(daemon.pid), machine_busy_s()))
        time.sleep(min(args.sample_s, max(0.1, end - time.monotonic())))
    trace.append((round(time.monotonic() - t0, 1), rss_mb(daemon.pid), cpu_s(daemon.pid), machine_busy_s()))
    metrics = scrape(http_port)
    daemon.send_signal(signal.SIGTERM)
    try:
        rc = daemon.wait(60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        rc = "killed"
    time.sleep(2.0)  # let the tail of the feed arrive
    listen.send_signal(signal.SIGTERM)
    listen.wait(20)
    return report(args, meta, trace, metrics, rc, listen.returncode, time.monotonic() - t0)


def report(args, meta, trace, metrics, rc, listen_rc, wall) -> dict:  # noqa: ANN001
    err = (args.out / "daemon.err").read_text()
    stopped = re.search(r"stopped: last seq (\d+), boot (\w+), logged (\d+), published (\d+), frames (\d+), "
                        r"dropped (\d+)", err)
    logged_rows = [json.loads(x) for x in (args.out / "decisions.jsonl").read_text().splitlines() if x.strip()] \
        if (args.out / "decisions.jsonl").exists() else []
    seqs = [r["seq"] for r in logged_rows]
    listen_summary = json.loads((args.out / "listen.json").read_text()) if (args.out / "listen.json").exists() else {}
    received = [json.loads(x)["seq"] for x in (args.out / "received.jsonl").read_text().splitlines() if x.strip()]
    rss = [r for _, r, _, _ in trace if r is not None]
    warmup_s = min(30.0, args.minutes * 30)
    warm = [r for t, r, _, _ in trace if r is not None and t >= warmup_s]
    # what else kept the cores busy (the listener, this script, and anything else running on the machine):
    # a daemon that falls behind while this is high was short of CPU, not too slow
    others = [(t, m - c if m is not None and c is not None else None) for t, _, c, m in trace]
    out = {
        "minutes": args.minutes, "wall_s": round(wall, 1), "stub": args.stub, "video_items_per_s": meta.get("rate_achieved"),
        "daemon_exit": rc, "listen_exit": listen_rc,
        "rss_mb": {"at_launch": rss[0] if rss else None, "start_after_warmup": warm[0] if warm else None,
                   "end": rss[-1] if rss else None, "max": max(rss) if rss else None},
        "decisions_logged": len(seqs), "log_seq_consecutive": seqs == list(range(1, len(seqs) + 1)),
        "decisions_published": int(stopped.group(4)) if stopped else None,
        "last_seq": int(stopped.group(1)) if stopped else None,
        "decisions_received": len(received), "received_first_seq": received[0] if received else None,
        "received_last_seq": received[-1] if received else None,
        "received_gaps": listen_summary.get("gaps"), "received_missing": listen_summary.get("missing"),
        "heartbeat_losses": listen_summary.get("heartbeat_losses"),
        "listen_silent_start": listen_summary.get("silent_start"),
        "decisions_per_s": round(len(seqs) / wall, 2) if wall else None,
        "frames_captured": int(stopped.group(5)) if stopped else metric_sum(metrics, "ewaste_frames_captured_total"),
        "frames_dropped": int(stopped.group(6)) if stopped else metric_sum(metrics, "ewaste_frames_dropped_total"),
        "late_decisions": metric_sum(metrics, "ewaste_late_decisions_total"),
        "classifier_batch_size": bucket_counts(metrics, "ewaste_inference_batch_size"),  # classifier calls by batch size
        "decision_age_s": age_counts(metrics),  # published within N s of the line crossing (at the last scrape, before the stop)
        "rejects": sum(1 for r in logged_rows if r["label"] == "reject"),
        "behind_episodes": behind_episodes(err),  # times the health went degraded for being behind, and why
        "cpu_percent": cpu_share([(t, c) for t, _, c, _ in trace], warmup_s),  # the daemon's CPU, % of one core
        "cpu_percent_rest_of_machine": _at_least_zero(cpu_share(others, warmup_s)),  # everything else, % of one core
        "rss_trace": [(t, r) for t, r, _, _ in trace],
    }
    (args.out / "soak.json").write_text(json.dumps(out, indent=1))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "soak")
    p.add_argument("--video", help="existing PREFIX.cam0.mp4 (default: make one)")
    p.add_argument("--images", type=Path, default=DATA)
    p.add_argument("--rate", type=float, default=36.0, help="items/s in the made video")
    p.add_argument("--video-seconds", type=float, default=60.0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--size", default="640x360")
    p.add_argument("--model", help="model folder (default: the config's / shipped)")
    p.add_argument("--config", help="base YAML (cameras/publish/metrics/logging are set by the soak)")
    p.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period")
    p.add_argument("--stub", action="store_true", help="stub pipeline (one decision per frame): soak the daemon "
                   "plumbing only (sources, log, publisher, listen)")
    p.add_argument("--play-fps", type=float, help="play the video at this rate instead of its own")
    args = p.parse_args()
    args.out = args.out.resolve()
    r = run_soak(args)
    short = {k: v for k, v in r.items() if k != "rss_trace"}
    print(json.dumps(short, indent=1))
    ok = r["daemon_exit"] == 0 and r["log_seq_consecutive"] and not r["received_gaps"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
