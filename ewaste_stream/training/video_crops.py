"""Belt crops cut from a simulated video via its ground truth (``PREFIX.gt.jsonl``).

For every item that crosses the decision line, camera 0's frame ``frame_at_line`` is read and
the item's silhouette box ``bbox_at_line`` is cut as a square with a margin (like the
detector's crops). Labels come from the GT; the source photo (for leak filtering) is the
video's image folder (``PREFIX.meta.json: images``) joined with the GT ``file``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import DatasetError
from .datasets import EvalSet

MARGIN = 0.15


def read_gt(prefix: str | Path) -> tuple[list[dict], dict]:
    gt, meta = Path(f"{prefix}.gt.jsonl"), Path(f"{prefix}.meta.json")
    for p in (gt, meta, Path(f"{prefix}.cam0.mp4")):
        if not p.is_file():
            raise DatasetError(f"--video {prefix}: {p} not found (expected PREFIX.cam0.mp4, .gt.jsonl, .meta.json)")
    rows = [json.loads(line) for line in gt.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows, json.loads(meta.read_text(encoding="utf-8"))


def square_box(box: Sequence[int], margin: float = MARGIN) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    half = max(x1 - x0, y1 - y0) * (1 + 2 * margin) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half))


def crop_padded(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    import cv2

    x0, y0, x1, y1 = box
    h, w = img.shape[:2]
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(img[y0 + pad:y1 + pad, x0 + pad:x1 + pad])


def cut_boxes(video: str | Path, boxes_by_frame: dict[int, Sequence[Sequence[int]]]) -> list[np.ndarray]:
    """RGB square crops (:func:`square_box`, :func:`crop_padded`) of the boxes wanted in each frame
    of ``video``: frame by frame, and in list order within a frame. Reading stops at the last frame
    wanted, or earlier where the video ends."""
    import cv2

    crops = []
    cap = cv2.VideoCapture(str(video))
    try:
        idx, last = 0, max(boxes_by_frame, default=-1)
        while idx <= last:
            ok, frame = cap.read()
            if not ok:
                break
            for box in boxes_by_frame.get(idx, ()):
                crops.append(cv2.cvtColor(crop_padded(frame, square_box(box)), cv2.COLOR_BGR2RGB))
            idx += 1
    finally:
        cap.release()
    return crops


def video_set(prefix: str | Path, class_names: Sequence[str]) -> EvalSet:
    rows, meta = read_gt(prefix)
    wanted: dict[int, list[dict]] = {}
    for r in rows:
        if r.get("frame_at_line") is not None and r.get("bbox_at_line") and r["label"] in class_names:
            wanted.setdefault(int(r["frame_at_line"]), []).append(r)
    images = Path(meta.get("images", ""))
    crops = cut_boxes(f"{prefix}.cam0.mp4", {f: [r["bbox_at_line"] for r in rs] for f, rs in wanted.items()})
    cut = [r for f in sorted(wanted) if f >= 0 for r in wanted[f]][:len(crops)]  # the rows of the crops, in order
    labels = [class_names.index(r["label"]) for r in cut]
    sources = [str(images / r["file"]) for r in cut]
    ids = [f"{Path(str(prefix)).name}#item{r['item']}" for r in cut]
    if not crops:
        raise DatasetError(f"--video {prefix}: no item crossed the line inside the video")
    return EvalSet(f"video_{Path(str(prefix)).name}", crops, np.array(labels, dtype=np.int64), tuple(sources), tuple(ids))
