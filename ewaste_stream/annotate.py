"""``replay --annotate out.mp4``: what the pipeline saw and decided, drawn on the video
(:class:`Overlay`; the live daemon serves the same picture at ``/snapshot.jpg``, :class:`FrameGrabber`).

Boxes are coloured by track state (grey tentative, amber confirmed, green decided, red
rejected) and labelled with the track id and its running vote (top class and fused
probability) or, once decided, the decision. The decision line is drawn across the belt.
Regions of the detector's mask that the tracker left out are thin magenta boxes, labelled
with the reason (``track.Ignored``; fragments unlabelled): an item that goes by with only such
a box was seen by the detector and dropped by a tracker threshold, one with none was not seen.
The video is written with OpenCV's ``mp4v`` codec (OpenCV's FFmpeg has no H.264 encoder).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import cv2
import numpy as np
from loguru import logger

from .messages import Decision, Frame
from .track import Ignored, TrackState

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import Pipeline

GREY, AMBER, GREEN, RED, CYAN = (160, 160, 160), (0, 190, 255), (60, 220, 60), (40, 40, 235), (255, 255, 0)
MAGENTA = (255, 0, 255)


class AnnotateError(RuntimeError):
    pass


class Overlay:
    """Draws what the pipeline saw and decided on one camera frame: the frame's tracks, their
    votes or decisions, the regions left out and the decision line (``replay --annotate``, and
    the live daemon's ``/snapshot.jpg``). Call it on the thread that runs the pipeline."""

    def __init__(self, pipeline: "Pipeline") -> None:
        self.pipeline = pipeline
        self.decided: OrderedDict[int, Decision] = OrderedDict()

    def note(self, decisions: Sequence[Decision]) -> None:
        """Remember the latest decisions (what the boxes of decided items say)."""
        for d in decisions:
            self.decided[d.item_id] = d
            while len(self.decided) > 500:
                self.decided.popitem(last=False)

    def draw(self, frame: Frame) -> np.ndarray:
        """A copy of the frame's picture with the overlay drawn on it."""
        img = frame.image.copy()
        self._line(img, frame)
        step = self.pipeline.last_seen.get(frame.camera)
        for box, why in (step.ignored if step is not None else []):
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            cv2.rectangle(img, (x0, y0), (x1, y1), MAGENTA, 1)
            if why != Ignored.FRAGMENT:
                _text(img, why.value, (x0 + 2, min(frame.height - 4, y1 + 14)), MAGENTA, scale=0.4)
        for tr, view in (step.seen if step is not None else []):
            if view.camera != frame.camera:
                continue
            colour, text = self._label(tr.id, tr.state)
            x0, y0, x1, y1 = (int(round(v)) for v in view.bbox)
            cv2.rectangle(img, (x0, y0), (x1, y1), colour, 2)
            _text(img, f"#{tr.id} {text}", (x0 + 2, max(14, y0 - 4)), colour)
        n = self.pipeline.counts["decisions"]
        _text(img, f"{frame.camera} t={frame.t:7.3f}s  decisions={n}  belt={abs(self.pipeline.tracker.velocity):.0f}px/s",
              (8, 22), CYAN, scale=0.6)
        return img

    def _label(self, track_id: int, state: TrackState) -> tuple[tuple[int, int, int], str]:
        d = self.decided.get(track_id)
        if d is not None:
            if d.rejected:
                return RED, f"reject:{d.reject_reason.value if d.reject_reason else ''} ({d.top_label})"
            return GREEN, f"{d.label} {d.confidence:.2f}"
        vote = self.pipeline.running_vote(track_id)
        colour = AMBER if state == TrackState.CONFIRMED else GREY
        return colour, "" if vote is None else f"{vote[0]}? {vote[1]:.2f}"

    def _line(self, img: np.ndarray, frame: Frame) -> None:
        line_u = self.pipeline.tracker.line_u
        if line_u is None:
            return
        bmap = self.pipeline.tracker.camera_map(frame.camera)
        top = bmap.to_image(np.array([[line_u, bmap.view_extent(frame.width, frame.height)[1]]]))[0]
        bot = bmap.to_image(np.array([[line_u, bmap.view_extent(frame.width, frame.height)[3]]]))[0]
        cv2.line(img, (int(top[0]), 0), (int(bot[0]), frame.height - 1), CYAN, 2)


class Annotator:
    """Writes one annotated frame per call of :meth:`write` (one camera)."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], pipeline: "Pipeline") -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AnnotateError(f"{self.path}: cannot make its folder ({exc.strerror or exc}); give a writable path") from exc
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
        if not self.writer.isOpened():
            raise AnnotateError(f"{self.path}: cannot write an mp4v video here (check the folder and the name)")
        self.size = size
        self.overlay = Overlay(pipeline)
        self.count = 0

    def write(self, frame: Frame, decisions: Sequence[Decision]) -> None:
        self.overlay.note(decisions)
        img = self.overlay.draw(frame)
        if img.shape[1] != self.size[0] or img.shape[0] != self.size[1]:
            img = cv2.resize(img, self.size)
        self.writer.write(img)
        self.count += 1

    def close(self) -> None:
        self.writer.release()


class FrameGrabber:
    """The latest frame of a camera, drawn with the pipeline's overlay, for a thread that asks
    (the daemon's HTTP ``/snapshot.jpg``). The picture is drawn on the pipeline's own thread,
    right after it processed the next frame of that camera, so the drawing never reads the
    tracker while it changes; a frame nobody asked for costs one dict lookup."""

    def __init__(self, cameras: Sequence[str], render: Callable[[Frame], bytes]) -> None:
        self.cameras = tuple(cameras)
        self._render = render
        self._lock = threading.Lock()
        self._wanted: dict[str, list[_Wanted]] = {}

    def request(self, camera: str, timeout: float) -> bytes | None:
        """JPEG of ``camera``'s next processed frame, or None when none came within ``timeout`` s.
        Raises ``KeyError`` for a camera that is not configured."""
        if camera not in self.cameras:
            raise KeyError(camera)
        want = _Wanted(threading.Event())
        with self._lock:
            self._wanted.setdefault(camera, []).append(want)
        if not want.done.wait(timeout):
            with self._lock:
                waiting = self._wanted.get(camera, [])
                if want in waiting:
                    waiting.remove(want)
        return want.jpeg

    def serve(self, frame: Frame) -> None:
        """Called by the pipeline's thread after each processed frame."""
        if not self._wanted:
            return
        with self._lock:
            wants = self._wanted.pop(frame.camera, None)
        if not wants:
            return
        try:
            jpeg: bytes | None = self._render(frame)
        except Exception as exc:  # noqa: BLE001 - a picture must never stop the line
            logger.error(f"snapshot of {frame.camera} frame {frame.seq} failed: {exc}")
            jpeg = None
        for want in wants:
            want.jpeg = jpeg
            want.done.set()


@dataclass(eq=False)
class _Wanted:
    done: threading.Event
    jpeg: bytes | None = None


def overlay_jpeg(overlay: Overlay | None, quality: int = 80) -> Callable[[Frame], bytes]:
    """``FrameGrabber``'s render: the overlay drawn on the frame (the bare frame without one), as JPEG."""

    def render(frame: Frame) -> bytes:
        img = overlay.draw(frame) if overlay is not None else frame.image
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    return render


def _text(img: np.ndarray, s: str, org: tuple[int, int], colour: tuple[int, int, int], scale: float = 0.5) -> None:
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
