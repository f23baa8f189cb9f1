"""``make_belt_video``: simulated belt videos with ground truth.

Writes ``PREFIX.cam0.mp4`` (``.cam1`` ... for more cameras, mp4v), ``PREFIX.gt.jsonl`` (one
line per item) and ``PREFIX.meta.json``. Definitions the pipeline and the scorer rely on:

- stream time of frame ``i`` is ``i / fps``;
- ``t_cross``: the (sub-frame) time when the item's centroid crosses x = line_position x width
  in camera 0; the first frame at or past the line is ``ceil(t_cross * fps)``;
- ``y``: the centroid's cross-belt position, 0..1 of the belt width (camera 0's height);
- ``t_enter``: when the leading edge of the item's silhouette enters camera 0 (0 for items
  already on the belt at the first frame);
- extras: ``frame_at_line`` (first frame at or past the line) and ``bbox_at_line`` (the
  silhouette's box, alpha > 0.5, in camera 0 px at that frame: x0, y0, x1, y1 exclusive),
  ``cutout`` (False: the photo's whole tile is on the belt).
"""

from __future__ import annotations

import json
import math
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .. import CLASS_NAMES
from .effects import Realism
from .layout import Arrivals, BeltGeometry, Placement, iter_items, load_photos
from .render import BeltRenderer, make_cameras

WARMUP_S = 0.25  # no item crosses the line earlier: the pipeline must see an item before it crosses
LINE_POSITION = 0.75


class VideoSpec(BaseModel):
    """What to generate (mirrors the flags of tools/make_belt_video.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seconds: float = Field(20.0, gt=0, le=3600)
    fps: float = Field(60.0, gt=0, le=240)
    size: tuple[int, int] = (1280, 720)  # width, height
    rate: float = Field(35.0, gt=0, le=1000)  # requested items/s
    cameras: int = Field(1, ge=1, le=8)
    seed: int = 0
    belt_speed: int | None = Field(None, ge=1)  # px/frame; default ~1.7 frame widths per second
    lanes: int = Field(4, ge=1, le=16)
    gap: int = Field(5, ge=0, le=50)  # items stay >= ~2*gap px apart (10 px: "may come within 10 px")

    @field_validator("size")
    @classmethod
    def _size_ok(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 64 or v[1] < 64 or v[0] % 2 or v[1] % 2:
            raise ValueError(f"size must be even and at least 64x64, got {v[0]}x{v[1]}")
        return v

    def speed(self) -> int:
        return self.belt_speed or max(1, int(round(1.7 * self.size[0] / self.fps)))

    def n_frames(self) -> int:
        return max(1, int(round(self.seconds * self.fps)))


@dataclass(frozen=True, slots=True)
class VideoResult:
    videos: list[Path]
    gt: Path
    meta_path: Path
    meta: dict[str, Any]


def open_scene(images: str | Path, spec: VideoSpec, realism: Realism) -> tuple[BeltRenderer, list[dict[str, Any]]]:
    """A renderer for ``spec`` and the list that collects the GT row of every item it pulls."""
    ss = np.random.SeedSequence(spec.seed)
    layout_rng, belt_rng, cam_rng = (np.random.default_rng(s) for s in ss.spawn(3))
    w, h = spec.size
    geo = BeltGeometry(width=w, height=h, speed=spec.speed(), fps=spec.fps, line=LINE_POSITION,
                       lanes=spec.lanes, gap=spec.gap)
    photos = load_photos(Path(images), realism)
    unknown = sorted({p.label for p in photos} - set(CLASS_NAMES))
    if unknown:
        logger.warning("class folders not in CLASS_NAMES: {}", ", ".join(unknown))
    px_per_s = geo.speed * geo.fps
    t_start = -(geo.line * w + 0.5 * h) / px_per_s  # start with the belt left of the line already loaded
    pulled: list[dict[str, Any]] = []
    arrivals = Arrivals(spec.rate, t_start, spec.seconds, min_t_cross=WARMUP_S)
    items = iter_items(photos, geo, arrivals, realism, layout_rng)

    def recording() -> Iterator[Placement]:
        for p in items:
            pulled.append(gt_row(p, geo))
            yield p

    cams = make_cameras(spec.cameras, geo, realism, cam_rng)
    return BeltRenderer(geo, recording(), cams, realism, belt_rng), pulled


def gt_row(p: Placement, geo: BeltGeometry) -> dict[str, Any]:
    px_per_s = geo.speed * geo.fps
    cx, cy = p.centroid
    t_cross = (geo.line * geo.width - cx) / px_per_s
    t_enter = max(0.0, -(p.x0 + p.box[2]) / px_per_s)
    f_line = first_frame_at_line(t_cross, geo.fps)
    x = p.x0 + geo.speed * f_line
    bx0, by0, bx1, by1 = p.box
    return {"item": p.item, "label": p.photo.label, "file": p.photo.file, "t_enter": round(t_enter, 6),
            "t_cross": round(t_cross, 6), "y": round(cy / geo.height, 6), "angle": round(p.pose.angle, 3),
            "scale": round(p.pose.scale, 5), "cutout": p.photo.is_cutout, "frame_at_line": f_line,
            "bbox_at_line": [x + bx0, p.y0 + by0, x + bx1, p.y0 + by1]}


def make_belt_video(images: str | Path, out: str | Path, realism: Realism | None = None,
                    **spec_fields: Any) -> VideoResult:
    """Render a belt video (one mp4 per camera) with its ground truth and meta file.

    ``spec_fields`` are the fields of ``VideoSpec`` (seconds, fps, size, rate, cameras, seed,
    belt_speed, lanes, gap); ``realism`` holds the realism knobs.
    """
    spec = VideoSpec(**spec_fields)
    realism = realism or Realism()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    renderer, pulled = open_scene(images, spec, realism)
    n = spec.n_frames()
    paths = [out.with_name(f"{out.name}.cam{i}.mp4") for i in range(spec.cameras)]
    with _VideoWriters(paths, spec.fps, spec.size) as writers:
        for f in range(n):
            writers.put(renderer.render(f))
    t_last = (n - 1) / spec.fps
    rows = [r for r in pulled if r["t_enter"] <= t_last]
    gt_path = out.with_name(f"{out.name}.gt.jsonl")
    gt_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta = _meta(spec, realism, renderer, rows, paths, Path(images))
    meta_path = out.with_name(f"{out.name}.meta.json")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    logger.info("wrote {} frames x {} camera(s), {} items ({:.1f} items/s achieved) to {}*",
                n, spec.cameras, len(rows), meta["rate_achieved"], out)
    return VideoResult(paths, gt_path, meta_path, meta)


class _VideoWriters:
    """mp4v writers fed by one background thread (encoding overlaps rendering; the queue is
    bounded and ``put`` blocks, so no frame is ever dropped)."""

    def __init__(self, paths: list[Path], fps: float, size: tuple[int, int], depth: int = 4):
        self.writers = []
        for p in paths:
            wr = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            if not wr.isOpened():
                self._release()
                raise OSError(f"{p}: OpenCV cannot open an mp4v writer here; check the folder is writable")
            self.writers.append(wr)
        self.queue: queue.Queue[list[np.ndarray] | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="belt-video-writer", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (frames := self.queue.get()) is not None:
            if self.error is not None:
                continue  # keep draining so put() never blocks forever
            try:
                for wr, img in zip(self.writers, frames):
                    wr.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self.error = exc

    def put(self, frames: list[np.ndarray]) -> None:
        if self.error is not None:
            raise OSError(f"writing the video failed: {self.error}") from self.error
        self.queue.put(frames)

    def _release(self) -> None:
        for wr in self.writers:
            wr.release()

    def __enter__(self) -> "_VideoWriters":
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue.put(None)
        self.thread.join()
        self._release()
        if self.error is not None and exc[0] is None:
            raise OSError(f"writing the video failed: {self.error}") from self.error


def _meta(spec: VideoSpec, realism: Realism, r: BeltRenderer, rows: list[dict], paths: list[Path],
          images: Path) -> dict[str, Any]:
    geo, n = r.geo, spec.n_frames()
    t_last = (n - 1) / spec.fps
    crossing = [x for x in rows if WARMUP_S <= x["t_cross"] <= t_last]
    window = max(t_last - WARMUP_S, 1e-9)
    return {
        "generator": "ewaste_stream.sim.make_belt_video", "schema": 1,
        "fps": spec.fps, "size": list(spec.size), "width": spec.size[0], "height": spec.size[1],
        "n_frames": n, "duration": n / spec.fps, "t_last_frame": t_last,
        "belt_direction": "left_to_right", "belt_speed_px_per_frame": geo.speed,
        "belt_speed_px_per_s": geo.speed * spec.fps, "belt_loop_px": r.loop,
        "line_position": geo.line, "line_x": geo.line * geo.width,
        "rate_requested": spec.rate, "rate_achieved": round(len(crossing) / window, 3),
        "rate_window": [WARMUP_S, t_last], "items": len(rows), "items_crossing": len(crossing),
        "seed": spec.seed, "lanes": spec.lanes, "min_gap_px": 2 * spec.gap, "codec": "mp4v",
        "images": str(images), "videos": [p.name for p in paths],
        "cameras": [c.to_meta(geo) for c in r.cameras], "realism": realism.to_dict(),
        "definitions": {
            "t": "stream seconds = frame_index / fps",
            "t_cross": "when the item's centroid crosses x = line_x in cam0 (sub-frame); first frame at or "
                       "past the line = ceil(t_cross * fps); items with t_cross > t_last_frame are still "
                       "upstream when the video ends",
            "y": "centroid's cross-belt position, 0..1 of the belt width (cam0 height)",
            "t_enter": "leading edge of the silhouette enters cam0 (0 if on the belt at frame 0)",
            "rate_achieved": "items crossing the line within rate_window / its length",
            "scale": "belt px per photo px", "angle": "degrees, counter-clockwise",
        },
    }


def first_frame_at_line(t_cross: float, fps: float) -> int:
    """Index of the first frame whose item centroid is at or past the decision line."""
    return int(math.ceil(t_cross * fps - 1e-9))
