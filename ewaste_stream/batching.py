"""View selection, crops, and batching of crops for the classifier.

- :class:`ViewSelector` picks at most ``views_per_item`` views per item and camera: only
  views where the whole item is in the picture, spread evenly along the item's path from
  where it is first fully visible to just before the decision line (so the views differ).
- :func:`square_crop` cuts a view the way the training crops were cut (a square around the
  item's box with a margin; edge pixels reflected where the square leaves the picture).
- :class:`Batcher` groups views across items and cameras: a batch goes when it is full
  (``max_batch``), when its oldest view has waited ``max_wait_ms`` of *stream* time, or at
  once when an item is about to be decided. Boundaries depend on stream time only, so a
  replay batches identically every run.
- :class:`InferenceWorker` runs the classifier on its own thread (ONNX Runtime releases
  the GIL), at most ``max_inflight`` batches ahead; ``inline=True`` runs it in the caller.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np

from .messages import BBox


@dataclass(frozen=True, slots=True)
class ViewJob:
    """One crop waiting for (or being) classified."""

    track_id: int
    camera: str
    t: float
    crop: np.ndarray = field(repr=False, compare=False)  # RGB uint8
    quality: float = 1.0
    # (others, own, grow_px, own_grow_px): painted out of the crop (paint_others) on the classifier's thread
    paint: tuple[np.ndarray, np.ndarray, int, int] | None = field(default=None, repr=False, compare=False)

    def image(self) -> np.ndarray:
        """What the classifier sees: the crop, with the other items painted out when asked."""
        return self.crop if self.paint is None else paint_others(self.crop, *self.paint)


def crop_window(bbox: BBox, margin: float = 0.15) -> tuple[int, int, int, int]:
    """The square (x0, y0, x1, y1, image px) around ``bbox``: side = longest side x (1 + 2 margin).
    It may reach past the image (``cut_window`` reflects there)."""
    x0, y0, x1, y1 = bbox
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    half = max(2.0, side / 2.0)
    return int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half))


def cut_window(image: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """``image`` (any channels) inside ``window``, reflected at the image's edges."""
    h, w = image.shape[:2]
    a0, b0, a1, b1 = window
    return reflect_out(image[max(0, b0):min(h, b1), max(0, a0):min(w, a1)], (h, w), window)


def reflect_out(sub: np.ndarray, size_hw: tuple[int, int], window: tuple[int, int, int, int]) -> np.ndarray:
    """``sub`` (the part of ``window`` inside an image of ``size_hw``) grown to the whole window,
    reflected where the window reaches past the image."""
    h, w = size_hw
    a0, b0, a1, b1 = window
    px0, py0, px1, py1 = max(0, -a0), max(0, -b0), max(0, a1 - w), max(0, b1 - h)
    if px0 or py0 or px1 or py1:
        sub = cv2.copyMakeBorder(sub, py0, py1, px0, px1, cv2.BORDER_REFLECT)
    return sub


def square_crop(image_bgr: np.ndarray, bbox: BBox, margin: float = 0.15) -> np.ndarray:
    """RGB uint8 square around ``bbox`` (side = longest side x (1 + 2 margin)), reflected at edges."""
    return window_crop(image_bgr, crop_window(bbox, margin))


def window_crop(image_bgr: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """RGB uint8 of a BGR image inside ``window`` (:func:`crop_window`), reflected at edges."""
    return cv2.cvtColor(cut_window(image_bgr, window), cv2.COLOR_BGR2RGB)


def paint_others(crop: np.ndarray, others: np.ndarray, own: np.ndarray, grow_px: int, own_grow_px: int = 0
                 ) -> np.ndarray:
    """The crop with the other items' pixels painted the belt's colour, so the classifier sees one item.

    ``others`` / ``own``: uint8 masks of the crop (1 = another track's pixels / this item's). The
    others are grown by ``grow_px`` (their blurred edges and shadows), minus this item grown by
    ``own_grow_px``; they get the median colour of the pixels that are neither (the belt around the
    item). Returned unchanged when nothing is to be painted or too little belt is left to tell its
    colour (under 5 % of the crop)."""
    if not others.any():
        return crop
    if grow_px > 0:
        others = cv2.dilate(others, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * grow_px + 1,) * 2))
    if own_grow_px > 0:
        own = cv2.dilate(own, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * own_grow_px + 1,) * 2))
    free = cv2.compare(own, 0, cv2.CMP_EQ)  # 255 off this item
    paint = cv2.bitwise_and(cv2.compare(others, 0, cv2.CMP_GT), free)
    belt = cv2.bitwise_and(cv2.compare(others, 0, cv2.CMP_EQ), free)
    if not cv2.countNonZero(paint) or cv2.countNonZero(belt) < 0.05 * belt.size:
        return crop
    out = crop.copy()
    out[paint > 0] = _median_colour(crop, belt)
    return out


def _median_colour(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel median (the lower middle value) of a uint8 image's pixels under ``mask``, from
    histograms: a tenth of the time of ``np.median`` over the pixels."""
    out = np.empty(image.shape[2], image.dtype)
    for ch in range(image.shape[2]):
        hist = cv2.calcHist([image], [ch], mask, [256], [0, 256]).ravel()
        out[ch] = int(np.searchsorted(np.cumsum(hist), (int(hist.sum()) + 1) // 2))
    return out


@dataclass(slots=True)
class _PathState:
    first_u: float
    taken: int = 0
    next_u: float = 0.0


class ViewSelector:
    """Decides which observations of a track become classifier views."""

    def __init__(self, views_per_item: int, guard_frames: float) -> None:
        self.views = int(views_per_item)
        self.guard_frames = float(guard_frames)  # last view this many frames of travel before the line
        self._state: dict[tuple[int, str], _PathState] = {}

    def want(self, track_id: int, camera: str, u: float, line_u: float | None, step_u: float) -> bool:
        """Should this (fully visible) observation at belt position ``u`` be classified?

        ``step_u``: how far the belt moves per frame (for the guard before the line)."""
        key = (track_id, camera)
        st = self._state.get(key)
        if st is None:
            st = self._state[key] = _PathState(first_u=u, next_u=u)
        if st.taken >= self.views or u + 1e-9 < st.next_u:
            return False
        st.taken += 1
        if self.views > 1 and line_u is not None:
            end = line_u - self.guard_frames * abs(step_u)
            spacing = max(0.0, (end - st.first_u) / (self.views - 1))
            st.next_u = st.first_u + st.taken * spacing
        return True

    def taken(self, track_id: int, camera: str) -> int:
        st = self._state.get((track_id, camera))
        return 0 if st is None else st.taken

    def forget(self, track_id: int) -> None:
        for key in [k for k in self._state if k[0] == track_id]:
            del self._state[key]


class Batcher:
    """Deterministic batching by count and stream time."""

    def __init__(self, max_batch: int, max_wait_s: float) -> None:
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.pending: deque[ViewJob] = deque()

    def add(self, job: ViewJob) -> None:
        self.pending.append(job)

    def due(self, t: float, urgent: set[int] | frozenset[int] = frozenset()) -> list[list[ViewJob]]:
        """Batches to send now: full ones; all of them when the oldest view has waited long
        enough or a view of an ``urgent`` track is waiting."""
        out: list[list[ViewJob]] = []
        while len(self.pending) >= self.max_batch:
            out.append([self.pending.popleft() for _ in range(self.max_batch)])
        if self.pending and (t - self.pending[0].t >= self.max_wait_s - 1e-9
                             or any(j.track_id in urgent for j in self.pending)):
            out.extend(self.drain())
        return out

    def drain(self) -> list[list[ViewJob]]:
        out = []
        while self.pending:
            n = min(self.max_batch, len(self.pending))
            out.append([self.pending.popleft() for _ in range(n)])
        return out

    def retarget(self, old: int, new: int) -> None:
        """Views of track ``old`` now belong to track ``new`` (the tracks were one item)."""
        from dataclasses import replace

        self.pending = deque(replace(j, track_id=new) if j.track_id == old else j for j in self.pending)

    def drop(self, track_id: int) -> None:
        self.pending = deque(j for j in self.pending if j.track_id != track_id)

    def __len__(self) -> int:
        return len(self.pending)


@dataclass(slots=True)
class Batch:
    """A batch sent to the classifier and its future result (probabilities [B, C])."""

    jobs: list[ViewJob]
    future: Future
    submitted: float = 0.0  # perf_counter, for stats only


# The mirrors a second look may take (batching.flips): each a view of the item from another side.
MIRRORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "horizontal": lambda crop: crop[:, ::-1],  # left <-> right
    "vertical": lambda crop: crop[::-1],  # top <-> bottom
    "both": lambda crop: crop[::-1, ::-1],  # turned half round
}


def flip_unsure(predict: Callable[[list[np.ndarray]], np.ndarray], crops: Sequence[np.ndarray], probs: np.ndarray,
                below: float, flips: Sequence[str] = ("horizontal",)) -> tuple[np.ndarray, int]:
    """``probs`` (float32 [B, C], of ``crops``) where each row whose top probability is under
    ``below`` is averaged with the probabilities of its crop mirrored each way in ``flips`` (keys
    of :data:`MIRRORS`; ``predict`` once more, on those crops only), and how many rows were. A
    second look from other sides: over 22 simulated videos about half a point more of the items
    right for one mirror, and as much again for two (models/README.md, "Mirrored second look")."""
    unsure = np.flatnonzero(probs.max(axis=1) < below)
    if unsure.size == 0 or not flips:
        return probs, 0
    mirrored = np.asarray(predict([np.ascontiguousarray(MIRRORS[f](crops[i])) for f in flips for i in unsure]),
                          dtype=np.float32)
    if mirrored.shape != (len(flips) * unsure.size, probs.shape[1]):
        raise ValueError(f"classifier returned {mirrored.shape} for {len(flips) * unsure.size} mirrored crops")
    out = probs.copy()
    out[unsure] = (probs[unsure] + mirrored.reshape(len(flips), unsure.size, -1).sum(axis=0)) / (1.0 + len(flips))
    return out, int(unsure.size)


class InferenceWorker:
    """Runs ``classifier.predict`` on batches, in a thread or inline; results in order. With
    ``flip_below``, the unsure views get a mirrored second look, each way in ``flips``
    (:func:`flip_unsure`)."""

    def __init__(self, classifier, max_inflight: int = 4, inline: bool = False,  # noqa: ANN001
                 flip_below: float | None = None, flips: Sequence[str] = ("horizontal",)) -> None:
        self.classifier = classifier
        self.max_inflight = max(1, int(max_inflight))
        self.inline = inline
        self.flip_below = flip_below
        unknown = sorted(set(flips) - set(MIRRORS))
        if unknown:
            raise ValueError(f"unknown mirror(s) {unknown}; known: {sorted(MIRRORS)}")
        self.flips = tuple(flips)
        self.flipped = 0  # views classified mirrored too
        self.inflight: deque[Batch] = deque()
        self.busy_s = 0.0  # time spent in predict (thread time)
        self.crops = 0
        self.batches = 0
        self._queue: deque[tuple[list[ViewJob], Future]] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        if not inline:
            self._thread = threading.Thread(target=self._loop, name="inference", daemon=True)
            self._thread.start()

    def submit(self, jobs: Sequence[ViewJob]) -> Batch:
        fut: Future = Future()
        batch = Batch(list(jobs), fut, time.perf_counter())
        self.inflight.append(batch)
        if self.inline:
            self._run(batch.jobs, fut)
        else:
            with self._cv:
                self._queue.append((batch.jobs, fut))
                self._cv.notify()
        return batch

    def _run(self, jobs: list[ViewJob], fut: Future) -> None:
        if not fut.set_running_or_notify_cancel():
            return
        t0 = time.perf_counter()
        try:
            images = [j.image() for j in jobs]
            probs = np.asarray(self.classifier.predict(images), dtype=np.float32)
            if probs.shape[0] != len(jobs):
                raise ValueError(f"classifier returned {probs.shape[0]} rows for {len(jobs)} crops")
            if self.flip_below is not None:
                probs, n = flip_unsure(self.classifier.predict, images, probs, self.flip_below, self.flips)
                self.flipped += n
            fut.set_result(probs)
        except BaseException as exc:  # noqa: BLE001 - delivered to the pipeline through the future
            fut.set_exception(exc)
        finally:
            self.busy_s += time.perf_counter() - t0
            self.crops += len(jobs)
            self.batches += 1

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                jobs, fut = self._queue.popleft()
            self._run(jobs, fut)

    def done(self) -> list[Batch]:
        """Finished batches at the head of the in-flight queue (in submission order)."""
        out = []
        while self.inflight and self.inflight[0].future.done():
            out.append(self.inflight.popleft())
        return out

    def wait_oldest(self) -> Batch:
        batch = self.inflight.popleft()
        batch.future.exception()  # blocks until finished
        return batch

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
