#!/usr/bin/env python
"""How long regions are when the tracker first sees them: to set tracker.new_max_length for a line.

    python tools/item_lengths.py VIDEO [--config C] [--frames N] [--gt PREFIX.gt.jsonl] [--json]

Runs the detector and the tracker (no classifier) over a recorded belt video with the length cut
off (``tracker.new_max_length: null``). For every track that reached the decision line it reports
the length of the region the track was born from: the long side of its minimum-area rectangle, as
a share of the frame height (the unit of ``new_max_length``). Single items make the bulk. Two items
lying one behind the other, whose gap blur and shadows closed, make the long tail. Set
``new_max_length`` above the end of the bulk; it must also exceed ``part_join_max_length``.

With ``--gt`` (a simulated video's ground truth) the tracks are split in two. Some are matched to
one item by the scorer. Others cover an item that got no decision of its own: two items merged. The
report then shows how well each value separates the two groups.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from ewaste_stream.config import load_config  # noqa: E402
from ewaste_stream.detect import BeltDetector  # noqa: E402
from ewaste_stream.geometry import BeltMap  # noqa: E402
from ewaste_stream.messages import Frame  # noqa: E402
from ewaste_stream.pipeline import FrameStride, decision_line_u  # noqa: E402
from ewaste_stream.scoring import matched_pairs, read_gt  # noqa: E402
from ewaste_stream.split import mask_length  # noqa: E402
from ewaste_stream.track import Tracker  # noqa: E402

CANDIDATES = (0.30, 0.33, 0.35, 0.37, 0.40, 0.45, 0.50)


def birth_lengths(video: Path, config: Path | None = None, frames: int | None = None) -> tuple[list[dict], dict]:
    """One row per track that crossed the decision line: ``{"track", "length" (x frame height),
    "t_cross", "y" (x frame height), "bbox" (px, at the line)}``, and facts about the video
    (``fps``, ``width``, ``height``, ``configured``: the config's new_max_length)."""
    configured = load_config(config).tracker.new_max_length
    cfg = load_config(config, overrides={"tracker": {"new_max_length": None}})
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise SystemExit(f"{video}: cannot open this video (is it a video file?)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 60.0
    cam = cfg.cameras[0]
    direction = cfg.decision.direction
    tracker = Tracker(cfg.tracker, {cam.id: BeltMap.from_config(cam.mapping, direction)}, None, detector=cfg.detector)
    stride = None
    det = None
    born: dict[int, float] = {}
    rows: list[dict] = []
    seq = 0
    while frames is None or seq < frames:
        ok, img = cap.read()
        if not ok:
            break
        h, w = img.shape[:2]
        if det is None:
            det = BeltDetector(cfg.detector, cam.id, w, h)
            stride = FrameStride.for_camera(cfg.tracker, h)
            tracker.line_u = decision_line_u(cfg.decision, tracker.camera_map(cam.id), w, h)
        frame = Frame(camera=cam.id, seq=seq, t=seq / fps, image=img)
        seq += 1
        if stride.skip(frame.seq, frame.t):
            continue
        an = det.analyse(frame)
        stride.ran(frame.seq, frame.t, an.sure_shift(cfg.tracker.min_shift_confidence))
        st = tracker.step(an)
        views = {}
        for tr, view in st.seen:
            views[tr.id] = view
            if tr.id not in born and view.footprint.any():
                born[tr.id] = mask_length(view.footprint) * an.scale[1] / h  # what the cut measures
        for tr in st.crossed:
            view = views.get(tr.id)
            if view is not None and tr.id in born:
                x0, y0, x1, y1 = view.bbox
                rows.append({"track": tr.id, "length": round(born[tr.id], 4), "t_cross": float(tr.t_cross),
                             "y": (y0 + y1) / 2.0 / h, "bbox": [float(v) for v in view.bbox]})
            tracker.mark_decided(tr)
    cap.release()
    if det is None:
        raise SystemExit(f"{video}: no frame could be read")
    return rows, {"fps": fps, "width": det.width, "height": det.height, "configured": configured, "frames": seq}


def label_by_gt(rows: list[dict], gt_path: Path, fps: float) -> list[str]:
    """Per row: "one item" (the scorer matches it to an item), "merged" (its box covers half or
    more of an item that got no track of its own) or "other" (a fragment or a phantom)."""
    from track_failures import _cover

    meta = json.loads(Path(str(gt_path).replace(".gt.jsonl", ".meta.json")).read_text())
    speed = float(meta["belt_speed_px_per_frame"])
    gt = read_gt(gt_path)
    decs = [{"label": "?", "t_cross": r["t_cross"], "y": r["y"], "bbox": r["bbox"]} for r in rows]
    pairs = matched_pairs(gt, decs, fps)
    taken = set(pairs.values())
    merged = set()
    t_last = max((r["t_cross"] for r in rows), default=0.0)
    for i, item in enumerate(gt):
        if i in taken or item["t_cross"] > t_last or not decs:
            continue
        cover, j = max((_cover(item, d, speed, fps), j) for j, d in enumerate(decs))
        if cover >= 0.5:
            merged.add(j)
    return ["merged" if j in merged else "one item" if j in pairs else "other" for j in range(len(rows))]


def summary(lengths: list[float]) -> dict:
    a = np.asarray(lengths, float)
    if a.size == 0:
        return {"n": 0}
    pct = np.percentile(a, [50, 90, 99, 99.9])
    return {"n": int(a.size), "p50": round(float(pct[0]), 3), "p90": round(float(pct[1]), 3),
            "p99": round(float(pct[2]), 3), "p99.9": round(float(pct[3]), 3), "max": round(float(a.max()), 3),
            "longer_than": {f"{c:.2f}": int((a > c).sum()) for c in CANDIDATES}}


def report(rows: list[dict], facts: dict, labels: list[str] | None = None) -> dict:
    out = {"video_frames": facts["frames"], "frame_height": facts["height"],
           "configured_new_max_length": facts["configured"], "tracks": summary([r["length"] for r in rows])}
    if labels is not None:
        for kind in ("one item", "merged", "other"):
            out[kind] = summary([r["length"] for r, k in zip(rows, labels) if k == kind])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("video", type=Path, help="a recorded belt video (the line's first camera)")
    p.add_argument("--config", type=Path, default=None, help="the line's config (default: the shipped defaults)")
    p.add_argument("--frames", type=int, default=None, help="read at most this many frames")
    p.add_argument("--gt", type=Path, default=None,
                   help="PREFIX.gt.jsonl of a simulated video: split the tracks by what each one was")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    rows, facts = birth_lengths(args.video, args.config, args.frames)
    labels = label_by_gt(rows, args.gt, facts["fps"]) if args.gt else None
    out = report(rows, facts, labels)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{args.video}: {facts['frames']} frames, {len(rows)} tracks reached the line; region length at birth, "
          f"x frame height ({facts['height']} px); configured new_max_length: {facts['configured']}")
    for kind, s in [(k, v) for k, v in out.items() if isinstance(v, dict)]:
        if not s.get("n"):
            print(f"  {kind:9s} none")
            continue
        longer = ", ".join(f"{c} {n}" for c, n in s["longer_than"].items())
        print(f"  {kind:9s} n {s['n']}: p50 {s['p50']}, p90 {s['p90']}, p99 {s['p99']}, p99.9 {s['p99.9']}, "
              f"max {s['max']}; longer than {longer}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
