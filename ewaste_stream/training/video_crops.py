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


def cut_boxes(video: str | Path, boxes: Sequence[tuple[int, Sequence[int]]]) -> list[tuple[int, np.ndarray]]:
    """``(i, RGB square crop)`` (:func:`square_box`, :func:`crop_padded`) of each ``boxes[i] = (frame,
    box)`` of ``video`` that could be cut, in reading order (by frame, then by ``i``). Reading stops at
    the last frame wanted, or earlier where the video ends (the boxes of later frames are left out)."""
    import cv2

    by_frame: dict[int, list[int]] = {}
    for i, (frame, _) in enumerate(boxes):
        by_frame.setdefault(int(frame), []).append(i)
    out = []
    cap = cv2.VideoCapture(str(video))
    try:
        idx, last = 0, max(by_frame, default=-1)
        while idx <= last:
            ok, image = cap.read()
            if not ok:
                break
            for i in by_frame.get(idx, ()):
                out.append((i, cv2.cvtColor(crop_padded(image, square_box(boxes[i][1])), cv2.COLOR_BGR2RGB)))
            idx += 1
    finally:
        cap.release()
    return out


def video_set(prefix: str | Path, class_names: Sequence[str]) -> EvalSet:
    rows, meta = read_gt(prefix)
    rows = [r for r in rows
            if r.get("frame_at_line") is not None and r.get("bbox_at_line") and r["label"] in class_names]
    images = Path(meta.get("images", ""))
    cut = cut_boxes(f"{prefix}.cam0.mp4", [(int(r["frame_at_line"]), r["bbox_at_line"]) for r in rows])
    crops = [c for _, c in cut]
    labels = [class_names.index(rows[i]["label"]) for i, _ in cut]
    sources = [str(images / rows[i]["file"]) for i, _ in cut]
    ids = [f"{Path(str(prefix)).name}#item{rows[i]['item']}" for i, _ in cut]
    if not crops:
        raise DatasetError(f"--video {prefix}: no item crossed the line inside the video")
    return EvalSet(f"video_{Path(str(prefix)).name}", crops, np.array(labels, dtype=np.int64), tuple(sources), tuple(ids))
