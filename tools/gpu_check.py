#!/usr/bin/env python
"""Helpers for tools/gpu_check.sh (one GPU session: tests + benchmarks -> one results file).

    python tools/gpu_check.py env OUT/env.json                   # torch/CUDA/GPU/ORT facts
    python tools/gpu_check.py model ARCH OUT_DIR [--onnx]        # random-weight model folder
    python tools/gpu_check.py photos OUT_DIR                     # procedural item photos
    python tools/gpu_check.py pipeline OUT/pipeline.json --fast F.json [--realtime R.json] \
        [--meta PREFIX.meta.json] [--score S.json] [--config TEXT]    # merge replay summaries
    python tools/gpu_check.py report OUT                         # OUT/gpu_results.md + .json

``photos`` draws simple device-like objects on white tiles (10 class folders) so that
``make_belt_video`` can render a belt video on a machine without the dataset: the pipeline
benchmark measures throughput, and random-weight models make the labels meaningless anyway.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = {"maxvit_b128_img_s": 2000.0, "maxvit_b8_p99_ms": 10.0, "pipeline_items_s": 33.0}


def env_facts() -> dict:
    facts: dict = {"python": platform.python_version(), "host": platform.node()}
    try:
        import torch

        facts.update(torch=torch.__version__, cuda_available=torch.cuda.is_available(),
                     torch_cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            facts.update(gpu=torch.cuda.get_device_name(0), gpu_mem_gib=round(p.total_memory / 2**30, 1),
                         capability=f"{p.major}.{p.minor}", bf16=torch.cuda.is_bf16_supported())
    except Exception as exc:  # noqa: BLE001 - report whatever is there
        facts["torch_error"] = repr(exc)
    for mod in ("timm", "onnxruntime", "cv2"):
        try:
            m = __import__(mod)
            facts[mod] = m.__version__
            if mod == "onnxruntime":
                facts["ort_providers"] = m.get_available_providers()
        except Exception as exc:  # noqa: BLE001
            facts[mod] = f"missing ({exc})"
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        facts["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        facts["nvidia_smi"] = f"unavailable ({exc})"
    return facts


def make_model(arch: str, out: Path, onnx: bool) -> None:
    import torch

    from ewaste_stream import CLASS_NAMES
    from ewaste_stream.model import ModelInfo, create_model, save_model_folder

    torch.manual_seed(0)
    model = create_model(arch, len(CLASS_NAMES))
    info = ModelInfo.for_model(model, f"{arch}-random", CLASS_NAMES, arch=arch,
                               data={"note": "random weights: for throughput benchmarks only"})
    save_model_folder(out, model, info, export_onnx=onnx)
    print(f"{out}: {arch} random weights{' + ONNX' if onnx else ''}")


def make_photos(out: Path, per_class: int = 6, seed: int = 0) -> None:
    """White 150 px tiles with a dark/colourful device-like object (body, panel, buttons)."""
    import cv2

    from ewaste_stream import CLASS_NAMES

    rng = np.random.default_rng(seed)
    for k, name in enumerate(CLASS_NAMES):
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.full((150, 150, 3), 255, np.uint8)
            body = tuple(int(v) for v in rng.integers(20, 200, 3))
            w, h = int(rng.integers(50, 120)), int(rng.integers(40, 120))
            x0, y0 = (150 - w) // 2, (150 - h) // 2
            if k % 3 == 0:
                cv2.ellipse(img, (75, 75), (w // 2, h // 2), 0, 0, 360, body, -1)
            else:
                cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), body, -1)
            panel = tuple(int(v) for v in rng.integers(0, 256, 3))
            cv2.rectangle(img, (x0 + w // 5, y0 + h // 5), (x0 + w // 2, y0 + h // 2), panel, -1)
            for _ in range(int(rng.integers(2, 7))):
                c = (int(rng.integers(x0 + 5, x0 + w - 4)), int(rng.integers(y0 + 5, y0 + h - 4)))
                cv2.circle(img, c, int(rng.integers(2, 6)), tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
            cv2.imwrite(str(d / f"{name.lower().replace(' ', '_')}_{i}.jpg"), img)
    print(f"{out}: {len(CLASS_NAMES) * per_class} procedural photos")


def merge_pipeline(out: Path, fast: Path, realtime: Path | None, meta: Path | None, score: Path | None,
                   config: str) -> None:
    """One pipeline record: replay as fast as possible (capacity) + paced at the video's fps."""
    load = lambda p: json.loads(p.read_text()) if p is not None and p.is_file() else None  # noqa: E731
    keep = ("frames", "video_s", "wall_s", "decisions", "views", "items_per_s", "realtime_factor", "fps",
            "latency_ms_p50", "latency_ms_p99", "wall_latency_ms_p50", "wall_latency_ms_p99", "stage_s",
            "inference_s", "dropped", "errors", "rss_mb_end")
    f, r, m = load(fast), load(realtime), load(meta) or {}
    rec: dict = {"config": config, "items_per_s": None if f is None else f.get("items_per_s"),
                 "video": {k: m.get(k) for k in ("size", "fps", "duration", "rate_achieved", "items", "cameras")
                           if k in m}}
    if isinstance(rec["video"].get("cameras"), list):
        rec["video"]["cameras"] = len(rec["video"]["cameras"])
    if f is not None:
        rec["views_per_item"] = round(f["views"] / max(f["decisions"], 1), 2)
        rec["fast"] = {k: f.get(k) for k in keep}
    if r is not None:
        rec["realtime"] = {k: r.get(k) for k in keep}
    if load(score) is not None:
        rec["score_vs_gt"] = {k: v for k, v in load(score).items() if k not in ("confusion", "per_class_recall")}
    out.write_text(json.dumps(rec, indent=1) + "\n")
    print(json.dumps(rec))


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip().startswith("{")]


def _bench_table(rows: list[dict]) -> list[str]:
    out = ["| arch | backend | precision | compiled | channels_last | batch | img/s | p50 ms | p99 ms | n |",
           "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    key = lambda r: (r["arch"], r["backend"], r["precision"], str(r.get("compile_mode")), r["channels_last"],  # noqa: E731
                     r["batch"])
    for r in sorted(rows, key=key):
        be = r["backend"] if r["backend"] == "torch" else f"onnx {r.get('provider') or ''}".strip()
        comp = r.get("compile_mode") or "eager" if r.get("compiled") else "eager"
        out.append(f"| {r['arch']} | {be} | {r['precision']} | {comp} | {r['channels_last']} | {r['batch']} | "
                   f"{r['img_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['n']} |")
    return out


def _best(rows: list[dict], arch: str, batch: int, metric: str, amp: bool = True) -> dict | None:
    cands = [r for r in rows if r["arch"] == arch and r["batch"] == batch and r["device"].startswith("cuda")
             and (not amp or r["precision"] in ("fp16", "bf16"))]
    if not cands:
        return None
    return max(cands, key=lambda r: r["img_s"]) if metric == "img_s" else min(cands, key=lambda r: r["p99_ms"])


def _describe(r: dict) -> str:
    comp = f"compiled {r.get('compile_mode')}" if r.get("compiled") else "eager"
    return f"{r['backend']} {r['precision']} {comp} channels_last={r['channels_last']}"


def _targets(rows: list[dict], pipe: dict) -> list[str]:
    out = ["| target | goal | measured | config | met |", "|---|---:|---:|---|---|"]
    b128 = _best(rows, "maxvit_tiny_tf_224", 128, "img_s")
    b8 = _best(rows, "maxvit_tiny_tf_224", 8, "p99", amp=False)
    items = pipe.get("items_per_s")
    for name, goal, r, val, ok in [
        ("MaxViT-Tiny img/s, batch 128, AMP", f">= {TARGETS['maxvit_b128_img_s']:.0f}", b128,
         None if b128 is None else b128["img_s"], b128 is not None and b128["img_s"] >= TARGETS["maxvit_b128_img_s"]),
        ("MaxViT-Tiny p99 ms, batch 8", f"<= {TARGETS['maxvit_b8_p99_ms']:.0f}", b8,
         None if b8 is None else b8["p99_ms"], b8 is not None and b8["p99_ms"] <= TARGETS["maxvit_b8_p99_ms"]),
        ("pipeline items/s, MaxViT-Tiny (replay, as fast as possible)", f">= {TARGETS['pipeline_items_s']:.0f}",
         None, items, items is not None and items >= TARGETS["pipeline_items_s"]),
    ]:
        shown = "not measured" if val is None else f"{val:.1f}"
        cfg = _describe(r) if r else (f"{pipe.get('config', '')}; {pipe.get('views_per_item')} views per item"
                                      if "pipeline" in name and pipe else "")
        out.append(f"| {name} | {goal} | {shown} | {cfg} | {'yes' if ok else 'no' if val is not None else '?'} |")
    return out


def _torch_vs_ort(rows: list[dict]) -> list[str]:
    out = []
    for arch in sorted({r["arch"] for r in rows}):
        for b in sorted({r["batch"] for r in rows if r["arch"] == arch}):
            t = [r for r in rows if r["arch"] == arch and r["batch"] == b and r["backend"] == "torch"
                 and r["device"].startswith("cuda")]
            o = [r for r in rows if r["arch"] == arch and r["batch"] == b and r["backend"] == "onnx"
                 and r.get("provider") == "CUDAExecutionProvider"]
            if t and o:
                bt, bo = max(t, key=lambda r: r["img_s"]), max(o, key=lambda r: r["img_s"])
                win = "torch" if bt["img_s"] >= bo["img_s"] else "ONNX Runtime CUDA"
                out.append(f"- {arch} batch {b}: torch {bt['img_s']:.0f} img/s ({_describe(bt)}) vs ORT CUDA "
                           f"{bo['img_s']:.0f} img/s -> {win} faster")
    return out or ["- not measured (no ONNX Runtime CUDA provider on this machine, or the step was skipped)"]


def _pipeline_lines(pipe: dict, bench_pipe: dict | None) -> list[str]:
    if not pipe:
        return ["not measured (see Steps)"]
    f, r, v = pipe.get("fast") or {}, pipe.get("realtime") or {}, pipe.get("video") or {}
    out = [f"- config: {pipe.get('config')}",
           f"- video: {v.get('size')} px, {v.get('fps')} fps, {v.get('cameras')} cameras, {v.get('duration')} s, "
           f"{v.get('items')} items ({v.get('rate_achieved')} items/s on the belt)",
           f"- as fast as possible: **{f.get('items_per_s')} items/s**, {f.get('realtime_factor')}x real time, "
           f"{f.get('fps')} frames/s per camera, {pipe.get('views_per_item')} views per item; stage seconds "
           f"{f.get('stage_s')}, classifier thread {f.get('inference_s')} s; decision latency p50/p99 "
           f"{f.get('latency_ms_p50')}/{f.get('latency_ms_p99')} ms (stream), errors {f.get('errors')}"]
    if r:
        out.append(f"- paced at the video's fps (live-like): {r.get('realtime_factor')}x real time, dropped frames "
                   f"{r.get('dropped')}, wall latency frame read -> decision p50/p99 {r.get('wall_latency_ms_p50')}/"
                   f"{r.get('wall_latency_ms_p99')} ms")
    if pipe.get("score_vs_gt"):
        sc = pipe["score_vs_gt"]
        out.append(f"- vs ground truth (random weights: only the counts mean something): items {sc.get('items')}, "
                   f"matched {sc.get('matched')}, missed {sc.get('missed')}, duplicates {sc.get('duplicates')}, "
                   f"phantoms {sc.get('phantoms')}")
    if bench_pipe:
        out.append(f"- tools/bench_pipeline.py (start-up included): {bench_pipe.get('items_per_s')} items/s, "
                   f"{bench_pipe.get('realtime_factor')}x real time, model load {bench_pipe.get('model_load_s')} s")
    return out


def report(out: Path) -> None:
    env = json.loads((out / "env.json").read_text()) if (out / "env.json").is_file() else {}
    rows = _rows(out / "bench.jsonl")
    pipe = json.loads((out / "pipeline.json").read_text()) if (out / "pipeline.json").is_file() else {}
    bp = out / "bench_pipeline.json"
    bench_pipe = next((json.loads(x) for x in reversed(bp.read_text().splitlines()) if x.startswith("{")), None) \
        if bp.is_file() else None
    steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()] \
        if (out / "steps.tsv").is_file() else []
    md = [f"# GPU check results: {env.get('gpu', 'no GPU')}", "",
          f"torch {env.get('torch')} (CUDA {env.get('torch_cuda')}, cuDNN {env.get('cudnn')}), "
          f"timm {env.get('timm')}, onnxruntime {env.get('onnxruntime')} {env.get('ort_providers')}; "
          f"nvidia-smi: {env.get('nvidia_smi')}", "",
          "Models have **random weights** (throughput only). Inference timings include preprocessing: "
          "uint8 crops of 256 px resized to 224 and normalised (on the GPU for torch, on the host for ONNX "
          "Runtime), host->device copy and probabilities back on the host.", "",
          "## Targets (issue 8)", "", *_targets(rows, pipe), "",
          "## Which backend is faster", "", *_torch_vs_ort(rows), "",
          "## Inference benchmarks (tools/bench_infer.py)", "", *_bench_table(rows), "",
          "## Pipeline (replay of a simulated belt video)", "", *_pipeline_lines(pipe, bench_pipe), "",
          "## Steps", "", "| step | exit | seconds | note |", "|---|---:|---:|---|",
          *[f"| {' | '.join(s + [''] * (4 - len(s)))} |" for s in steps], ""]
    (out / "gpu_results.md").write_text("\n".join(md))
    (out / "gpu_results.json").write_text(json.dumps({"env": env, "targets": TARGETS, "bench": rows, "pipeline": pipe,
                                                      "bench_pipeline": bench_pipe, "steps": steps}, indent=1) + "\n")
    print("\n".join(md[:14]))
    print(f"wrote {out / 'gpu_results.md'} and gpu_results.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("env").add_argument("out", type=Path)
    m = sub.add_parser("model")
    m.add_argument("arch")
    m.add_argument("out", type=Path)
    m.add_argument("--onnx", action="store_true")
    sub.add_parser("photos").add_argument("out", type=Path)
    sub.add_parser("report").add_argument("out", type=Path)
    pl = sub.add_parser("pipeline")
    pl.add_argument("out", type=Path)
    pl.add_argument("--fast", type=Path, required=True)
    for name in ("realtime", "meta", "score"):
        pl.add_argument(f"--{name}", type=Path, default=None)
    pl.add_argument("--config", default="")
    args = ap.parse_args(argv)
    if args.cmd == "env":
        facts = env_facts()
        args.out.write_text(json.dumps(facts, indent=1) + "\n")
        print(json.dumps(facts))
    elif args.cmd == "model":
        make_model(args.arch, args.out, args.onnx)
    elif args.cmd == "photos":
        make_photos(args.out)
    elif args.cmd == "pipeline":
        merge_pipeline(args.out, args.fast, args.realtime, args.meta, args.score, args.config)
    else:
        report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
