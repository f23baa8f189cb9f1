#!/usr/bin/env python
"""Benchmark the streaming pipeline on a belt video (replay, as fast as possible).

Reports frames/s, items/s, real-time factor (video seconds / wall seconds, start-up
included: model load, first frames), per-stage time, decision latency p50/p99 (stream time
from the line crossing to the decision, and wall time from the frame being read to the
decision), CPU time, RSS at start and end, and - when the video has a ``.gt.jsonl`` beside
it - the scorer's figures.

    # generate a fresh 20 s 1280x720 60 fps video from val images (SIM's generator), then bench it
    python tools/bench_pipeline.py --make runs/bench/belt --seconds 20 --rate 35 --seed 11
    # an existing video (several files = cameras); --loops 15 for a 5-minute memory check
    python tools/bench_pipeline.py --video runs/bench/belt.cam0.mp4 --json
    python tools/bench_pipeline.py --video samples/belt_val_demo.cam0.mp4 --set batching.views_per_item=2

Speed figures are for the machine at hand; on a shared machine they vary run to run.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _args(argv: list[str] | None) -> argparse.Namespace:
    from ewaste_stream.config import setting_arg  # the config is read before the timer starts anyway

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", nargs="+", type=Path, help="video file(s); file i is camera i")
    src.add_argument("--make", type=Path, metavar="PREFIX", help="generate PREFIX.cam0.mp4 (+ gt, meta) first")
    p.add_argument("--images", type=Path, default=Path("/work/shared/datasets/ewaste/val"),
                   help="class folders for --make (default: the val split)")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--fps", type=float, default=60.0)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--rate", type=float, default=35.0, help="requested items/s for --make")
    p.add_argument("--cameras", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: built-in defaults)")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the config's)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", type=setting_arg,
                   help="config override, e.g. batching.views_per_item=2 or model.precision=fp32 "
                        "(JSON, else a string; repeatable)")
    p.add_argument("--loops", type=int, default=1, help="play the video this many times (memory check)")
    p.add_argument("--drop", type=_drop, default=None, metavar="N:K",
                   help="skip the first K of every N frames, as a live camera's queue drops them in bursts "
                        "while the pipeline is behind (deterministic)")
    p.add_argument("--calibration", action="store_true",
                   help="take the cameras' image->belt mappings from the video's .meta.json")
    p.add_argument("--out", type=Path, default=None, help="write the decisions here (JSONL)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p.parse_args(argv)


def _drop(text: str) -> tuple[int, int]:
    try:
        n, k = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give N:K, e.g. 10:6 (skip 6 frames of every 10)") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= K < N")
    return n, k


def _config(args: argparse.Namespace):  # noqa: ANN202
    from ewaste_stream.config import load_config, settings_overrides

    over = settings_overrides(args.set)
    if args.model is not None:
        over.setdefault("model", {})["dir"] = str(args.model)
    return load_config(args.config, over or None)


def _make(args: argparse.Namespace) -> list[Path]:
    from ewaste_stream.sim import make_belt_video

    w, h = (int(v) for v in args.size.lower().split("x"))
    t0 = time.perf_counter()
    res = make_belt_video(args.images, args.make, seconds=args.seconds, fps=args.fps, size=(w, h),
                          rate=args.rate, cameras=args.cameras, seed=args.seed)
    print(f"generated {res.videos[0].name} ... in {time.perf_counter() - t0:.1f} s: "
          f"{res.meta['items']} items, {res.meta['rate_achieved']:.1f} items/s achieved", file=sys.stderr)
    return list(res.videos)


def _score(videos: list[Path], decisions: list, loops: int) -> dict | None:
    from ewaste_stream.scoring import read_gt, score_report

    prefix = str(videos[0]).rsplit(".cam", 1)[0]
    gt, meta = Path(prefix + ".gt.jsonl"), Path(prefix + ".meta.json")
    if loops != 1 or not gt.exists() or not meta.exists():
        return None
    m = json.loads(meta.read_text())
    res, _ = score_report(read_gt(gt), decisions, m["fps"], t_last=m.get("t_last_frame"))
    res.pop("confusion", None)
    return res


def thread_cpu(seen: dict[int, tuple[str, float]]) -> None:
    """Add each thread's CPU seconds so far to ``seen`` (tid -> (name, s)); Linux only (/proc).

    Python threads go by their names (MainThread: the tracker; analysis: the detector; inference:
    the classifier; read-camN: decoding), native ones (ONNX Runtime's pool, FFmpeg's decoder
    threads) by their kernel names. A thread keeps the last figure read before it ended."""
    import os
    import threading

    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    for task in tasks.iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (task / "comm").read_text().strip()
        except OSError:  # ended meanwhile
            continue
        tid = int(task.name)
        name = names.get(tid) or (seen[tid][0] if tid in seen else "native:" + comm)
        seen[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)


def _by_name(seen: dict[int, tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, s in seen.values():
        out[name] = round(out.get(name, 0.0) + s, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def run(argv: list[str] | None = None) -> int:
    args = _args(argv)
    from ewaste_stream.model.selfcheck import classifier_from_config
    from ewaste_stream.protocol import encode_decision
    from ewaste_stream.config import ConfigError
    from ewaste_stream.replay import ReplayHooks, ReplayOptions, format_summary, replay_files, rss_mb

    try:  # before --make spends a minute on a video
        cfg = _config(args)
    except ConfigError as exc:  # names the file or --set key and what is wrong with it
        print(f"bench_pipeline: {exc}", file=sys.stderr)
        return 2
    videos = _make(args) if args.make else list(args.video)
    if args.calibration:
        from ewaste_stream.geometry import cameras_from_meta

        cfg = cameras_from_meta(str(videos[0]).rsplit(".cam", 1)[0] + ".meta.json", cfg)
    rss0 = rss_mb()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    clf = classifier_from_config(cfg)  # as replay and run load it: model.precision, self-check
    t_model = time.perf_counter() - t0
    decisions: list = []
    keep = args.loops == 1  # a soak keeps no decisions (they would be the memory growth it measures)
    rss_trace: list[tuple[float, float]] = []  # (video s, RSS MB) every 10 s of video

    threads: dict[int, tuple[str, float]] = {}  # CPU per thread, read every second of video

    due = [0.0, 0.0]  # stream time of the next CPU and RSS reading (frames may be dropped: --drop)

    def sample(frame, _decisions) -> None:  # noqa: ANN001
        if frame.camera != summary_camera:
            return
        if frame.t >= due[0]:
            thread_cpu(threads)
            due[0] = frame.t + 1.0
        if frame.t >= due[1]:
            rss_trace.append((round(frame.t, 1), rss_mb()))
            due[1] = frame.t + 10.0

    from ewaste_stream.replay import probe

    first = probe(videos[0], "cam0")
    summary_camera = first.camera
    hooks = ReplayHooks(on_decision=decisions.append if keep else None, on_frame=sample)
    summary = replay_files(videos, cfg, clf, hooks, ReplayOptions(loops=args.loops, drop=args.drop))
    wall = time.perf_counter() - t0
    thread_cpu(threads)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if args.out is not None and keep:
        args.out.write_text("".join(encode_decision(d).decode() + "\n" for d in decisions))
    frames = max(summary.frames.values(), default=0)
    result = {
        "videos": [str(v) for v in videos], "cameras": len(videos), "frames_per_camera": frames,
        "frames_dropped": summary.dropped, "frames_skipped": summary.pipeline.get("frames_skipped", {}),
        "video_s": round(summary.video_s, 3), "wall_s_incl_startup": round(wall, 3),
        "model_load_s": round(t_model, 3), "realtime_factor": round(summary.video_s / wall, 3),
        "frames_per_s": round(frames / wall, 1), "items": summary.decisions,
        "items_per_s": round(summary.decisions / wall, 2), "views": summary.views,
        "views_per_item": round(summary.views / max(1, summary.decisions), 2),
        "batches": summary.pipeline.get("batches", 0), "mean_batch": summary.pipeline.get("mean_batch", 0.0),
        "cpu_s": round(cpu, 2), "cpu_per_video_s": round(cpu / max(summary.video_s, 1e-9), 3),
        "cpu_s_by_thread": _by_name(threads),
        "stage_s": summary.stage_s, "inference_s": summary.inference_s,
        "latency_stream_ms": {"p50": summary.latency_ms_p50, "p99": summary.latency_ms_p99},
        "latency_wall_ms": {"p50": summary.wall_latency_ms_p50, "p99": summary.wall_latency_ms_p99},
        "rss_mb": {"start": rss0, "after_replay": summary.rss_mb_end, "every_10_video_s": rss_trace},
        "model": clf.name, "rejects": summary.rejects, "errors": summary.errors,
        "score": _score(videos, decisions, args.loops),
    }
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(format_summary(summary))
        print(f"wall incl. start-up {wall:.2f} s (model load {t_model:.2f} s): {result['realtime_factor']:.2f}x "
              f"real time, {result['frames_per_s']} frames/s, {result['items_per_s']} items/s; "
              f"CPU {cpu:.1f} s ({result['cpu_per_video_s']:.2f} CPU-s per video second)")
        if result["cpu_s_by_thread"]:
            print("CPU s by thread (read every second of video): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in result["cpu_s_by_thread"].items()))
        if len(rss_trace) > 1:
            print("RSS (MB) every 10 s of video: " + " ".join(f"{m:.0f}" for _, m in rss_trace))
        if result["score"]:
            print("score: " + json.dumps(result["score"], sort_keys=True))
    return 1 if summary.errors else 0


if __name__ == "__main__":
    sys.exit(run())
