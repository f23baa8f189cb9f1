"""The streaming pipeline: frames in, exactly one sort decision per item out.

``Pipeline.process(frame)`` is one synchronous, deterministic step for one camera frame:

    detector (belt model, item mask, belt motion) -> tracker (footprints, belt kinematics)
    -> view selection + crops -> batcher -> classifier thread -> votes -> decisions

The classifier runs on its own thread (``batching.InferenceWorker``) and overlaps with the
next frames' detection. The detector's step (:meth:`Pipeline.analyse`) may run on a thread of
its own too, ahead of the tracker (``ahead.AheadStage``: the replay and the live daemon do).

Determinism does not depend on how fast the classifier is: an item is decided
in the step where its centroid crosses the decision line (or its track is lost), and that
step first waits for every view of *that* item still being classified. So a decision's
content depends only on the frames, never on timing, and its stream-time latency is under
one frame (plus the frames left out on a slow belt, below). Decisions get ``seq`` 1, 2, 3 ... per pipeline (per boot).

On a slow belt, frames are left out (:class:`FrameStride`, ``tracker.min_step``): ``analyse``
answers ``SKIPPED`` for them and ``process`` does nothing with them.

Time is the frames' stream time; ``wall_clock`` (optional) only fills ``wall_decided``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable

import cv2
import numpy as np
from loguru import logger

from .batching import (Batch, Batcher, InferenceWorker, ViewJob, ViewSelector, crop_window, reflect_out,
                       window_crop)
from .config import Config, DecisionSection, TrackerSection
from .decide import DecisionFactory
from .detect import BeltDetector, FrameAnalysis
from .geometry import BeltMap
from .messages import REJECT_LABEL, Decision, Frame, Observation, StatusEvent, StatusKind
from .orient import derotated_crop, footprint_rect
from .track import CameraView, Ignored, Track, Tracker, TrackState, TrackStep
from .vote import vote

STAGES = ("detect", "track", "views", "wait", "decide")
SIDE_QUALITY = 0.5  # vote weight of a view whose item touches the belt-side edge of the picture


class _Skipped:
    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED = _Skipped()  # Pipeline.analyse's answer for a frame it leaves out (FrameStride)


def decision_line_u(dec: DecisionSection, bmap: BeltMap, width: int, height: int) -> float:
    """The decision line in belt coordinates (``u`` along the travel), from the line camera's
    picture (``width`` x ``height`` px) and its mapping; ``decision.line_x`` when given."""
    if dec.line_x is not None:  # given in belt coordinates; u grows along the travel
        return float(dec.line_x if dec.direction == "left_to_right" else -dec.line_x)
    pos = dec.line_position if dec.direction == "left_to_right" else 1.0 - dec.line_position
    return float(bmap.to_belt(np.array([[pos * width, height / 2.0]]))[0][0])


@dataclass
class FrameStride:
    """Which frames of one camera to run on a slow belt (``tracker.min_step``, here in px).

    After each frame run, the stride is the number of frames in which the belt moves about
    ``min_step_px``, from the shift the detector measured since the frame run before; the
    frames in between are left out, but never for ``max_skip_s`` or longer. Decided from the
    frames alone (in order, on the thread that analyses them), so a replay stays deterministic."""

    min_step_px: float | None
    max_skip_s: float
    last_seq: int | None = None
    last_t: float = 0.0
    stride: int = 1

    @classmethod
    def for_camera(cls, cfg: TrackerSection, height: int) -> "FrameStride":
        """The stride of ``tracker.min_step`` (x the frame height) for a camera ``height`` px high."""
        return cls(None if cfg.min_step is None else cfg.min_step * height, cfg.max_skip_s)

    def skip(self, seq: int, t: float) -> bool:
        return (self.last_seq is not None and 0 < seq - self.last_seq < self.stride
                and t - self.last_t < self.max_skip_s)

    def ran(self, seq: int, t: float, shift: tuple[float, float] | None) -> None:
        if self.min_step_px is not None and self.last_seq is not None and shift is not None and seq > self.last_seq:
            per_frame = math.hypot(*shift) / (seq - self.last_seq)
            # a stopped belt: as rarely as max_skip_s allows
            self.stride = max(1, round(self.min_step_px / per_frame)) if per_frame > 0 else 1 << 30
        self.last_seq, self.last_t = seq, t


class Pipeline:
    """Wires the stages. Parts are injected (classifier; sinks as callables) so tests use stubs."""

    def __init__(self, config: Config, classifier, boot_id: str,  # noqa: ANN001 - any Classifier
                 on_decision: Callable[[Decision], None],
                 on_status: Callable[[StatusEvent], None] | None = None, *,
                 wall_clock: Callable[[], float] | None = None, inline_inference: bool = False) -> None:
        self.config = config
        self.classifier = classifier
        self.class_names = tuple(classifier.class_names)
        self.boot_id = boot_id
        self.on_decision = on_decision
        self.on_status = on_status
        direction = config.decision.direction
        maps = {c.id: BeltMap.from_config(c.mapping, direction) for c in config.cameras}
        self.line_camera = config.decision.line_camera or config.cameras[0].id
        self.tracker = Tracker(config.tracker, maps, None, detector=config.detector)
        self.detectors: dict[str, BeltDetector] = {}
        b = config.batching
        self.selector = ViewSelector(b.views_per_item, b.guard_frames)
        self.batcher = Batcher(b.max_batch, b.max_wait_ms / 1000.0)
        self.worker = InferenceWorker(classifier, b.max_inflight, inline=inline_inference, flip_below=b.flip_below,
                                      flips=b.flips)
        self.factory = DecisionFactory(config, classifier, boot_id, wall_clock)
        self.obs: dict[int, list[Observation]] = {}
        self.waiting: dict[int, int] = {}  # track id -> its views not classified yet
        self.frames: dict[str, int] = {}
        self.stage_s = dict.fromkeys(STAGES, 0.0)
        self.latency_ms: deque[float] = deque(maxlen=100_000)  # t_decided - t_cross, stream ms
        self.counts = {"decisions": 0, "views": 0, "views_skipped": 0, "stage_errors": 0, "sink_errors": 0, "tracks": 0}
        self.last_seen: dict[str, TrackStep] = {}
        # new regions the tracker left out, region-frames per reason (all keys from the start: read by other threads)
        self.ignored: dict[str, int] = {why.value: 0 for why in Ignored}
        self.on_track_step: Callable[[Frame, TrackStep], None] | None = None  # each tracker step (diagnostics)
        # each view as it is sent to the classifier (diagnostics, e.g. tools/refit_head.py; job.image() is what it sees)
        self.on_view: Callable[[ViewJob], None] | None = None
        self.strides: dict[str, FrameStride] = {}  # per camera, used by the thread that analyses
        self.skipped: dict[str, int] = {}  # frames left out on a slow belt, per camera
        self._high_water = False

    # -- public API ---------------------------------------------------------------------------
    def analyse(self, frame: Frame, small: np.ndarray | None = None) -> FrameAnalysis:
        """The detector's step for one frame: belt model, item mask, belt motion.

        :meth:`process` calls it, or it is called beforehand on another thread. A detector
        learns from its camera's frames in order, so one thread must analyse every frame, in
        stream order. ``small``: optional, the frame already shrunk for the detector
        (``detect.shrink`` with ``detect.working_size``), e.g. by the decoding thread.
        Returns ``SKIPPED`` for a frame left out on a slow belt (:class:`FrameStride`)."""
        stride = self.strides.get(frame.camera)
        if stride is None:
            stride = self.strides[frame.camera] = FrameStride.for_camera(self.config.tracker, frame.height)
        if stride.skip(frame.seq, frame.t):
            self.skipped[frame.camera] = self.skipped.get(frame.camera, 0) + 1
            return SKIPPED
        t0 = time.perf_counter()
        an = self._detector(frame).analyse(frame, small)
        self.stage_s["detect"] += time.perf_counter() - t0
        stride.ran(frame.seq, frame.t, an.sure_shift(self.config.tracker.min_shift_confidence))
        return an

    def process(self, frame: Frame, small: np.ndarray | None = None,
                analysis: FrameAnalysis | None = None) -> list[Decision]:
        """One camera frame -> the decisions made in this step (also given to ``on_decision``).

        ``analysis``: this frame's :meth:`analyse`, when it ran beforehand; else it runs here
        (on ``small`` if given)."""
        an = analysis if analysis is not None else self.analyse(frame, small)
        if an is SKIPPED:
            return []
        t1 = time.perf_counter()
        if frame.camera not in self.frames:  # the line camera's first frame places the decision line
            self._set_line(frame)
        if an.light_step is not None:
            ratio, bg, rg = an.light_step
            self._status(StatusKind.LIGHT_CHANGED, frame.camera, frame.t,
                         f"the belt became {100 * (ratio - 1):+.0f} % brighter and changed colour by "
                         f"B-G {bg:+.1f}, R-G {rg:+.1f} grey levels at once (lighting, exposure or white "
                         "balance changed); belt model adjusted")
        step = self.tracker.step(an)
        self._merge(step.merged)
        self.last_seen[frame.camera] = step
        for _, why in step.ignored:
            self.ignored[why.value] += 1
        if self.on_track_step is not None:
            self.on_track_step(frame, step)
        t2 = time.perf_counter()
        self._take_views(frame, step)
        self._collect()
        for jobs in self.batcher.due(frame.t, self._urgent(step)):
            self._submit(jobs)
        t3 = time.perf_counter()
        decisions = self._decide(frame.t, step.lost)
        self._forget(step.closed)
        self.frames[frame.camera] = self.frames.get(frame.camera, 0) + 1
        self.stage_s["track"] += t2 - t1
        self.stage_s["views"] += t3 - t2
        return decisions

    def flush(self, t: float) -> list[Decision]:
        """Decide every item in flight (end of stream, shutdown): crossed items as usual,
        the others as lost at ``t`` (rejected unless their votes are strong)."""
        for jobs in self.batcher.drain():
            self._submit(jobs)
        self._collect(wait_all=True)
        pending = [tr for tr in self.tracker.active_tracks() if tr.decidable]
        for tr in pending:
            if tr.t_cross is None:
                tr.lost = True
        return self._decide(t, pending)

    def close(self) -> None:
        self.worker.close()

    def stats(self) -> dict:
        lat = np.asarray(self.latency_ms, dtype=np.float64)
        w = self.worker
        return {
            "frames": dict(self.frames), "frames_skipped": dict(self.skipped), "tracks": self.tracker.created,
            "decisions": self.counts["decisions"], "rejects": dict(self.factory.rejects),
            "labels": dict(self.factory.labels), "views": w.crops, "views_skipped": self.counts["views_skipped"],
            "views_flipped": w.flipped,
            "batches": w.batches,
            "mean_batch": round(w.crops / w.batches, 2) if w.batches else 0.0,
            "stage_s": {k: round(v, 3) for k, v in self.stage_s.items()}, "inference_s": round(w.busy_s, 3),
            "latency_ms_p50": _pct(lat, 50), "latency_ms_p99": _pct(lat, 99), "latency_ms_max": _pct(lat, 100),
            "belt_speed_px_s": round(abs(self.tracker.velocity), 1),
            "cameras_active": self.tracker.active_cameras(), "degraded": self.degraded,
            "stage_errors": self.counts["stage_errors"], "sink_errors": self.counts["sink_errors"],
            "pending_views": len(self.batcher) + sum(len(b.jobs) for b in w.inflight),
            "ignored_regions": dict(self.ignored),
        }

    @property
    def degraded(self) -> bool:
        """True while fewer cameras deliver frames than are configured."""
        return len(self.tracker.active_cameras()) < len(self.config.cameras)

    def camera_ended(self, camera: str, t: float) -> None:
        """A camera's source is gone for good (e.g. its replay file ended early)."""
        self.tracker.set_camera_active(camera, False)
        self._status(StatusKind.SOURCE_LOST, camera, t, "no more frames from this camera; deciding from the others")

    def running_vote(self, track_id: int) -> tuple[str, float] | None:
        """(top class, fused probability) of the views classified so far (for annotation)."""
        obs = self.obs.get(track_id)
        if not obs:
            return None
        res = vote(obs, self.class_names, self.config.vote)  # the same fusion the decision will use
        return res.top_label, res.confidence

    # -- stages -------------------------------------------------------------------------------
    def _detector(self, frame: Frame) -> BeltDetector:
        det = self.detectors.get(frame.camera)
        if det is None:
            if frame.camera not in {c.id for c in self.config.cameras}:
                logger.warning(f"camera {frame.camera!r} is not in the config; using the identity belt mapping")
            det = self.detectors[frame.camera] = BeltDetector(self.config.detector, frame.camera,
                                                              frame.width, frame.height)
        return det

    def _set_line(self, frame: Frame) -> None:
        """The decision line, in belt coordinates, from the line camera's picture."""
        if self.tracker.line_u is not None and frame.camera != self.line_camera:
            return
        bmap = self.tracker.camera_map(frame.camera)
        self.tracker.line_u = decision_line_u(self.config.decision, bmap, frame.width, frame.height)
        self.factory.belt_extent = bmap.view_extent(frame.width, frame.height)

    def _take_views(self, frame: Frame, step: TrackStep) -> None:
        line_u = self.tracker.line_u
        step_u = abs(self.tracker.velocity) * self.tracker.frame_dt()
        margin = self.config.batching.crop_margin
        for tr, view in step.seen:
            if (tr.state != TrackState.CONFIRMED or tr.born_past_line or tr.t_cross is not None
                    or view.truncated or view.camera != frame.camera):
                continue
            if not self.selector.want(tr.id, frame.camera, tr.u, line_u, step_u):
                continue
            if self._sure(tr.id):
                self.counts["views_skipped"] += 1
                continue  # its views so far decide it: another would not change the decision
            crop, paint = self._crop(frame, view, margin, tr.id, step)
            self.batcher.add(ViewJob(tr.id, frame.camera, frame.t, crop, SIDE_QUALITY if view.at_side else 1.0, paint))
            self.waiting[tr.id] = self.waiting.get(tr.id, 0) + 1

    def _sure(self, track_id: int) -> bool:
        """The views of this item classified so far already sort it with at least
        ``batching.stop_confidence``: its further views are skipped (the classifier's work goes
        where it is needed). Views of it still in the batcher or in flight are waited for first,
        as a decision waits for them, so replays stay deterministic; this is rare, because the
        next view of an item is taken many frames after the one before."""
        level = self.config.batching.stop_confidence
        if level is None or (track_id not in self.obs and not self.waiting.get(track_id, 0)):
            return False
        self._wait_for(track_id)
        obs = self.obs.get(track_id)
        if not obs:
            return False
        res = vote(obs, self.class_names, self.config.vote, cameras=len(self.config.cameras))
        return res.label != REJECT_LABEL and res.confidence >= level

    def _wait_for(self, track_id: int) -> None:
        """Classify this track's pending views now and apply their results."""
        if self.waiting.get(track_id, 0):
            if any(j.track_id == track_id for j in self.batcher.pending):
                for jobs in self.batcher.drain():
                    self._submit(jobs)
            self._collect(track_id=track_id)

    def _crop(self, frame: Frame, view: CameraView, margin: float, track_id: int, step: TrackStep
              ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, int, int] | None]:
        """A view's crop, and what to paint out of it on the classifier's thread (the other items
        that reach into it: ``batching.mask_neighbours``), or None. The masks are read here, from
        the tracker as it is in this step."""
        det = self.detectors[frame.camera]
        if self.config.batching.derotate:
            rect = footprint_rect(view.age == 0, view.x0, view.y0, (det.sx, det.sy))
            if rect is not None:
                return derotated_crop(frame.image, rect, margin), None
        window = crop_window(view.bbox, margin)  # the square the crop is cut from
        crop = window_crop(frame.image, window)
        grow = self.config.batching.mask_neighbours
        if grow is None:
            return crop, None
        own, others = _window_masks(window, frame, track_id, step, (det.sx, det.sy))
        if not others.any():
            return crop, None
        size = (frame.height, frame.width)
        return crop, (reflect_out(others, size, window), reflect_out(own, size, window),
                      int(round(grow * frame.height)), int(round(det.sx)))

    def _urgent(self, step: TrackStep) -> set[int]:
        """Tracks whose decision is due now or within the next two frames."""
        line_u = self.tracker.line_u
        ahead = 2.0 * abs(self.tracker.velocity) * self.tracker.frame_dt()
        out = {tr.id for tr in step.lost}
        if line_u is not None:
            out |= {tr.id for tr, _ in step.seen if tr.t_cross is not None or tr.u + ahead >= line_u}
        return out

    def _submit(self, jobs: list[ViewJob]) -> None:
        while len(self.worker.inflight) >= self.worker.max_inflight:
            if not self._high_water:
                self._high_water = True
                self._status(StatusKind.QUEUE_HIGH_WATER, "classifier", jobs[0].t,
                             f"{len(self.worker.inflight)} batches in flight; waiting for the classifier")
            self._apply(self._timed_wait())
        if not self.worker.inflight:
            self._high_water = False
        if self.on_view is not None:
            for job in jobs:
                self.on_view(job)
        self.worker.submit(jobs)
        self.counts["views"] += len(jobs)

    def _timed_wait(self) -> Batch:
        t0 = time.perf_counter()
        batch = self.worker.wait_oldest()
        self.stage_s["wait"] += time.perf_counter() - t0
        return batch

    def _collect(self, wait_all: bool = False, track_id: int | None = None) -> None:
        """Apply finished batches; with ``wait_all`` (or until ``track_id`` has no views left)
        block for the rest."""
        for batch in self.worker.done():
            self._apply(batch)
        while self.worker.inflight and (wait_all or (track_id is not None and self.waiting.get(track_id, 0))):
            self._apply(self._timed_wait())

    def _apply(self, batch: Batch) -> None:
        exc = batch.future.exception()
        if exc is not None:
            self.counts["stage_errors"] += 1
            logger.opt(exception=exc).error(f"classifier failed on a batch of {len(batch.jobs)} views: {exc}")
            self._status(StatusKind.STAGE_ERROR, "classifier", batch.jobs[0].t, str(exc))
        probs = None if exc is not None else batch.future.result()
        for i, job in enumerate(batch.jobs):
            self.waiting[job.track_id] = self.waiting.get(job.track_id, 1) - 1
            if probs is None or job.track_id not in self.tracker.tracks:
                continue
            p = np.clip(probs[i].astype(np.float32), 0.0, None)
            if not np.isfinite(p).all() or p.sum() <= 0:
                continue
            self.obs.setdefault(job.track_id, []).append(
                Observation(job.track_id, job.camera, job.t, p / p.sum(), job.quality))

    # -- decisions ----------------------------------------------------------------------------
    def _decide(self, t: float, lost: list[Track]) -> list[Decision]:
        due = {tr.id: tr for tr in self.tracker.active_tracks() if tr.decidable and tr.t_cross is not None}
        due.update({tr.id: tr for tr in lost if tr.decidable})
        if not due:
            return []
        t0 = time.perf_counter()
        out = []
        for tr in sorted(due.values(), key=lambda r: (r.t_cross if r.t_cross is not None else t, r.id)):
            self._wait_for(tr.id)
            out.append(self._emit(tr, t))
        self.stage_s["decide"] += time.perf_counter() - t0
        return out

    def _emit(self, tr: Track, t: float) -> Decision:
        obs = self.obs.pop(tr.id, [])
        active = len(self.config.cameras)
        decision = self.factory.make(tr, obs, t, self.tracker.velocity, cameras=active)
        self.tracker.mark_decided(tr)
        self.selector.forget(tr.id)
        self.waiting.pop(tr.id, None)
        self.counts["decisions"] += 1
        self.latency_ms.append(1000.0 * (decision.t_decided - decision.t_cross))
        try:
            self.on_decision(decision)
        except Exception as exc:  # noqa: BLE001 - a sink must not stop the line; it is reported
            self.counts["sink_errors"] += 1
            logger.opt(exception=exc).error(f"decision sink failed on seq {decision.seq}: {exc}")
            self._status(StatusKind.SINK_ERROR, "on_decision", t, str(exc))
        return decision

    def _merge(self, merged: list[tuple[int, int]]) -> None:
        """Two tracks were one item (see ``Tracker._dedupe``): the kept one gets the other's votes."""
        for drop, keep in merged:
            self.obs.setdefault(keep, []).extend(self.obs.pop(drop, []))
            self.selector.forget(drop)
            n = self.waiting.pop(drop, 0)
            if n:
                self.waiting[keep] = self.waiting.get(keep, 0) + n
                self.batcher.retarget(drop, keep)
                for batch in self.worker.inflight:
                    batch.jobs = [j if j.track_id != drop else replace(j, track_id=keep) for j in batch.jobs]

    def _forget(self, closed: list[Track]) -> None:
        for tr in closed:
            self.obs.pop(tr.id, None)
            self.selector.forget(tr.id)
            self.batcher.drop(tr.id)
            if not any(j.track_id == tr.id for b in self.worker.inflight for j in b.jobs):
                self.waiting.pop(tr.id, None)

    def _status(self, kind: StatusKind, source: str, t: float, detail: str) -> None:
        if self.on_status is None:
            return
        try:
            self.on_status(StatusEvent(kind, source, max(0.0, t), detail))
        except Exception as exc:  # noqa: BLE001
            logger.error(f"status sink failed: {exc}")


def _window_masks(window: tuple[int, int, int, int], frame: Frame, track_id: int, step: TrackStep,
                  scale: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 masks of the part of ``window`` inside the picture: the pixels of track ``track_id``
    and of the other tracks this step saw in that camera, from their footprints (the cells they
    covered this frame, at the detector's scale)."""
    a0, b0 = max(0, window[0]), max(0, window[1])
    a1, b1 = min(frame.width, window[2]), min(frame.height, window[3])
    own = np.zeros((max(0, b1 - b0), max(0, a1 - a0)), np.uint8)
    others = np.zeros_like(own)
    sx, sy = scale
    for tr, view in step.seen:
        x0, y0, x1, y1 = view.bbox
        if view.camera != frame.camera or x1 <= a0 or x0 >= a1 or y1 <= b0 or y0 >= b1:
            continue
        cells = (view.age == 0).view(np.uint8)
        h, w = cells.shape
        fx0, fy0 = int(round(view.x0 * sx)), int(round(view.y0 * sy))
        big = cv2.resize(cells, (int(round(w * sx)), int(round(h * sy))), interpolation=cv2.INTER_NEAREST)
        c0, r0 = max(a0, fx0), max(b0, fy0)
        c1, r1 = min(a1, fx0 + big.shape[1]), min(b1, fy0 + big.shape[0])
        if c1 > c0 and r1 > r0:
            target = own if tr.id == track_id else others
            target[r0 - b0:r1 - b0, c0 - a0:c1 - a0] |= big[r0 - fy0:r1 - fy0, c0 - fx0:c1 - fx0]
    return own, others


def _pct(x: np.ndarray, q: float) -> float | None:
    return None if x.size == 0 else round(float(np.percentile(x, q)), 2)
