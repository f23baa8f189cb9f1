"""Replay video files through the pipeline (``ewaste-stream replay``).

Default: as fast as the machine allows, every queue blocking, so the same files, config
and model give byte-identical decisions every run (stream time is ``frame_index / fps``;
``boot_id`` is derived from the inputs, not random; nothing wall-clock-based goes into a
decision). ``realtime=True`` paces the files to their fps and drops frames like a live
camera would (drop-oldest; every drop is counted).

Several files are frame-synchronous cameras (``config.cameras[i]`` describes file ``i``;
missing entries get ``cam<i>`` with the identity mapping). A camera whose file ends early
is reported and the rest is decided from the others.

Decoding runs on one thread per file (OpenCV releases the GIL while decoding), detection on
a thread of its own (:func:`analysed`, up to ``ANALYSIS_AHEAD`` frames ahead), tracking,
voting and deciding on the caller's thread, the classifier on the pipeline's inference
thread. Each detector still sees its camera's frames in order, so the decisions are the
same as with everything on one thread (on two cores about 6 % faster; more with more cores).
``realtime`` is built as the live daemon is (``app.DetectorStage``): the detector may run
``LIVE_ANALYSIS_AHEAD`` frames ahead and otherwise waits, and the paced frames queue drops
its oldest, so frames are dropped where the daemon would drop them.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from loguru import logger

from .ahead import DONE, AheadStage
from .config import CameraSection, Config
from .detect import working_size
from .messages import Decision, Frame, StatusEvent
from .sources import LIVE_ANALYSIS_AHEAD
from .videofiles import FileReader, Pacer, ReplayError, VideoInfo, merged_frames, probe, rss_mb

__all__ = ["ReplayError", "ReplayHooks", "ReplayOptions", "ReplaySummary", "VideoInfo", "format_summary", "probe",
           "replay_files", "rss_mb"]


ANALYSIS_AHEAD = 4  # frames the detector's thread may run ahead of the tracker (LIVE_ANALYSIS_AHEAD with realtime)


def analysed(source, analyse: Callable[[Frame, Any], Any], stop: threading.Event,  # noqa: ANN001, ANN201
             ahead: int = ANALYSIS_AHEAD):
    """``(frame, t_read, small)`` items of ``source`` -> ``(frame, t_read, small, analysis)``.

    ``analyse`` runs on a thread of its own (:class:`~.ahead.AheadStage`), in order, at most
    ``ahead`` frames ahead of the consumer; the thread takes the next frame from ``source`` only
    when there is room to hand it over (nothing is dropped here; a paced ``--realtime`` source
    drops its oldest frames itself, as a camera queue does). An exception there is raised here,
    after the frames before it. Ends when ``source`` does or ``stop`` is set; when the consumer
    stops early it sets ``stop`` so the thread (and the file readers) end too."""
    frames = iter(source)

    def take(_timeout: float) -> Any:
        return DONE if stop.is_set() else next(frames, DONE)

    stage = AheadStage(take, lambda item: analyse(item[0], item[2]), ahead=ahead, name="analysis").start()
    try:
        for (frame, t_read, small), an in stage.drain(until=stop):
            yield frame, t_read, small, an
        if stage.failed is not None:
            raise stage.failed
    finally:
        stop.set()
        stage.abort()


@dataclass(slots=True)
class ReplaySummary:
    files: list[str]
    frames: dict[str, int]
    video_s: float
    wall_s: float
    decisions: int
    labels: dict[str, int]
    rejects: dict[str, int]
    latency_ms_p50: float | None  # stream time, line crossing -> decision
    latency_ms_p99: float | None
    wall_latency_ms_p50: float | None  # wall time, frame read -> decision
    wall_latency_ms_p99: float | None
    stage_s: dict[str, float]
    inference_s: float
    views: int
    dropped: dict[str, int]
    rss_mb_start: float
    rss_mb_end: float
    errors: list[str] = field(default_factory=list)
    views_skipped: int = 0  # views not classified: the item's views so far sorted it (batching.stop_confidence)
    views_flipped: int = 0  # views classified mirrored too (batching.flip_below)
    pipeline: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return sum(self.frames.values()) / max(len(self.frames), 1) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def items_per_s(self) -> float:
        return self.decisions / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        return self.video_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        out.update(fps=round(self.fps, 2), items_per_s=round(self.items_per_s, 2),
                   realtime_factor=round(self.realtime_factor, 3))
        return out


def replay_boot_id(infos: Sequence[VideoInfo], config: Config, model_sha: str) -> str:
    """Deterministic per input: same files (name, size), config and model -> same boot id."""
    h = hashlib.sha256(f"{config.sha256()}|{model_sha}".encode())
    for i in infos:
        h.update(f"|{i.path.name}:{i.path.stat().st_size}".encode())
    return "replay-" + h.hexdigest()[:12]


def camera_config(config: Config, n: int) -> Config:
    """The config with exactly ``n`` cameras (file i = camera i; extra ones get defaults)."""
    cams = list(config.cameras[:n])
    ids = {c.id for c in cams}
    for i in range(len(cams), n):
        cid = f"cam{i}"
        while cid in ids:
            cid += "_"
        ids.add(cid)
        cams.append(CameraSection(id=cid, source="0"))
    return config.model_copy(update={"cameras": cams})


@dataclass(frozen=True, slots=True)
class ReplayHooks:
    """What a replay calls back; each is optional. A failing ``on_decision`` is reported as a
    status event and the replay goes on (``Pipeline``); the others are diagnostics."""

    on_decision: Callable[[Decision], None] | None = None
    on_status: Callable[[StatusEvent], None] | None = None
    # each frame, after the pipeline has run it, with the decisions it made
    on_frame: Callable[[Frame, list[Decision]], None] | None = None
    # each tracker step (``track.TrackStep``: e.g. the regions it left out)
    on_track_step: Callable[[Frame, Any], None] | None = None
    # each view sent to the classifier (``batching.ViewJob``: ``job.image()`` is the crop as the
    # classifier sees it, ``job.track_id`` the ``item_id`` of its decision)
    on_view: Callable[[Any], None] | None = None


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How to play the files. ``realtime`` paces them to their fps and drops frames like a live
    camera (module doc). ``loops`` > 1 plays them again and again (stream time runs on; for soak
    tests). ``drop=(n, k)`` skips the first ``k`` of every ``n`` frames of each file: the bursts a
    live camera's queue drops while the pipeline is behind, made deterministic (not with
    ``realtime``). ``annotate``: write an annotated video there. ``boot_id``: default, one derived
    from the files, config and model."""

    realtime: bool = False
    loops: int = 1
    drop: tuple[int, int] | None = None
    annotate: str | Path | None = None
    boot_id: str | None = None

    def __post_init__(self) -> None:
        if self.drop is not None and (self.realtime or not 0 <= self.drop[1] < self.drop[0]):
            raise ValueError(f"drop={self.drop}: give (n, k) with 0 <= k < n, and not with realtime (which drops by "
                             "itself)")
        if self.loops < 1:
            raise ValueError(f"loops={self.loops}: give 1 or more")


def replay_files(paths: Sequence[str | Path], config: Config, classifier,  # noqa: ANN001
                 hooks: ReplayHooks | None = None, options: ReplayOptions | None = None,
                 stop: threading.Event | None = None) -> ReplaySummary:
    """Run video files through a fresh :class:`Pipeline`; see the module doc.

    Raises ``ReplayError`` (before anything runs) when a file cannot be opened. Errors met
    later (a file ending early) are in ``summary.errors``; what was decided is kept. Setting
    ``stop`` ends the replay early, deciding what is in flight.
    """
    hooks, opts = hooks or ReplayHooks(), options or ReplayOptions()
    rss0, t_start = rss_mb(), time.perf_counter()
    config = camera_config(config, len(paths))
    infos = [probe(p, c.id, c.frame_offset, c.fps) for p, c in zip(paths, config.cameras)]
    run = _Replay(infos, config, classifier, opts.boot_id or replay_boot_id(infos, config, str(classifier.sha256)),
                  hooks.on_decision, hooks.on_status)
    run.pipe.on_track_step = hooks.on_track_step
    run.pipe.on_view = hooks.on_view
    stop = stop or threading.Event()
    annotator = None
    if opts.annotate is not None:
        from .annotate import Annotator

        annotator = Annotator(opts.annotate, infos[0].fps, (infos[0].width, infos[0].height), run.pipe)
    try:
        frames = analysed(run.source(opts.realtime, opts.loops, stop, opts.drop), run.pipe.analyse, stop,
                          LIVE_ANALYSIS_AHEAD if opts.realtime else ANALYSIS_AHEAD)
        run.loop(frames, stop, hooks.on_frame, annotator)
    finally:
        stop.set()
        run.finish()
        if annotator is not None:
            annotator.close()
    return run.summary(t_start, rss0)


class _Replay:
    """One replay: the pipeline, its frame sources and what is counted along the way."""

    def __init__(self, infos: list[VideoInfo], config: Config, classifier, boot_id: str,  # noqa: ANN001
                 on_decision: Callable[[Decision], None] | None,
                 on_status: Callable[[StatusEvent], None] | None) -> None:
        from .pipeline import Pipeline

        self.infos, self.config = infos, config
        self.on_decision = on_decision
        self.pipe = Pipeline(config, classifier, boot_id, self._decided, on_status)
        self.wall_lat: deque[float] = deque(maxlen=100_000)  # ms, frame read -> decision
        self.t_read = 0.0
        self.t_end = 0.0
        self.frames = {i.camera: 0 for i in infos}
        self.finished: dict[str, float] = {}  # camera -> time of its last frame (its file ended)
        self.errors: list[str] = []
        self.pacer: Pacer | None = None
        self.dropped: dict[str, int] = {}  # frames skipped by ``drop``
        self.readers: list[FileReader] = []

    def _decided(self, d: Decision) -> None:
        self.wall_lat.append(1000.0 * (time.perf_counter() - self.t_read))
        if self.on_decision is not None:
            self.on_decision(d)

    def source(self, realtime: bool, loops: int, stop: threading.Event,  # noqa: ANN201 - generator
               drop: tuple[int, int] | None = None):
        if realtime:
            self.pacer = Pacer(self.infos, max(c.queue_size for c in self.config.cameras), stop)
            self.pacer.start()
            return self.pacer.frames()
        self.readers = [FileReader(i, 8, stop, loops, working_size(self.config.detector, i.width, i.height))
                        for i in self.infos]
        for r in self.readers:
            r.start()
        frames = merged_frames(self.readers, self._ended)
        return frames if drop is None else self._dropping(frames, *drop)

    def _dropping(self, frames, n: int, k: int):  # noqa: ANN001, ANN202 - generators
        for item in frames:
            frame = item[0]
            if frame.seq % n < k:
                self.dropped[frame.camera] = self.dropped.get(frame.camera, 0) + 1
            else:
                yield item

    def _ended(self, r: FileReader, t: float) -> None:
        self.finished[r.info.camera] = t
        if r.error:
            self.errors.append(r.error)
            logger.error(r.error)

    def loop(self, source, stop: threading.Event, on_frame, annotator) -> None:  # noqa: ANN001
        reported: set[str] = set()
        for frame, t_read, small, an in source:
            if stop.is_set():
                break
            for cam, t_cam in list(self.finished.items()):
                if cam not in reported and frame.t > t_cam + 1e-9:  # the others go on: it ended early
                    reported.add(cam)
                    logger.warning(f"camera {cam}: its file ended at t={t_cam:.3f} s; deciding from the other camera(s)")
                    self.pipe.camera_ended(cam, frame.t)
            self.t_read = t_read
            decisions = self.pipe.process(frame, small, an)
            self.frames[frame.camera] += 1
            self.t_end = max(self.t_end, frame.t)
            if on_frame is not None:
                on_frame(frame, decisions)
            if annotator is not None and frame.camera == self.infos[0].camera:
                annotator.write(frame, decisions)

    def finish(self) -> None:
        """Decide everything in flight, stop the classifier thread, let the decoders end
        (the caller has set ``stop``)."""
        self.t_read = time.perf_counter()
        try:
            self.pipe.flush(self.t_end)
        finally:
            self.pipe.close()
            for thread in [*self.readers, *([self.pacer] if self.pacer is not None else [])]:
                thread.join(timeout=5.0)
        if self.pacer is not None:
            self.errors.extend(self.pacer.errors)

    def summary(self, t_start: float, rss0: float) -> ReplaySummary:
        stats = self.pipe.stats()
        dropped = dict(self.pacer.dropped) if self.pacer else dict(self.dropped)
        lat = np.asarray(self.wall_lat)
        return ReplaySummary(
            files=[str(i.path) for i in self.infos], frames=self.frames,
            video_s=max((n + dropped.get(c, 0) for c, n in self.frames.items()), default=0) / self.infos[0].fps,
            wall_s=time.perf_counter() - t_start,
            decisions=stats["decisions"], labels=stats["labels"], rejects=stats["rejects"],
            latency_ms_p50=stats["latency_ms_p50"], latency_ms_p99=stats["latency_ms_p99"],
            wall_latency_ms_p50=None if lat.size == 0 else round(float(np.percentile(lat, 50)), 2),
            wall_latency_ms_p99=None if lat.size == 0 else round(float(np.percentile(lat, 99)), 2),
            stage_s=stats["stage_s"], inference_s=stats["inference_s"], views=stats["views"],
            views_skipped=stats.get("views_skipped", 0), views_flipped=stats.get("views_flipped", 0),
            dropped=dropped, rss_mb_start=rss0, rss_mb_end=rss_mb(),
            errors=self.errors, pipeline=stats)


def format_summary(s: ReplaySummary) -> str:
    """Human-readable summary for the end of a replay."""
    lines = [
        f"replayed {len(s.files)} file(s): {sum(s.frames.values())} frames, {s.video_s:.2f} s of video "
        f"in {s.wall_s:.2f} s ({s.realtime_factor:.2f}x real time, {s.fps:.1f} frames/s per camera)",
        f"items: {s.decisions} ({s.items_per_s:.1f} items/s)  views classified: {s.views} "
        f"(skipped, item already sure: {s.views_skipped}; mirrored too: {s.views_flipped})",
        "per class: " + (", ".join(f"{k} {v}" for k, v in sorted(s.labels.items())) or "-"),
        "rejects: " + (", ".join(f"{k} {v}" for k, v in sorted(s.rejects.items())) or "none"),
        f"decision latency: stream p50 {s.latency_ms_p50} ms, p99 {s.latency_ms_p99} ms (line -> decision); "
        f"wall p50 {s.wall_latency_ms_p50} ms, p99 {s.wall_latency_ms_p99} ms (frame read -> decision)",
        "stage time (s busy; the classifier and detect run on threads of their own): "
        + ", ".join(f"{k} {v:.2f}" for k, v in s.stage_s.items())
        + f", classifier thread {s.inference_s:.2f}",
        f"memory: RSS {s.rss_mb_start:.0f} MB at start, {s.rss_mb_end:.0f} MB at end",
    ]
    if any(s.dropped.values()):
        lines.append("dropped frames: " + ", ".join(f"{k} {v}" for k, v in s.dropped.items()))
    skipped = s.pipeline.get("frames_skipped") or {}
    if any(skipped.values()):
        lines.append("frames left out, the belt moving slowly (tracker.min_step): "
                     + ", ".join(f"{k} {v}" for k, v in skipped.items()))
    ignored = {k: v for k, v in (s.pipeline.get("ignored_regions") or {}).items() if v}
    if ignored:
        lines.append("regions the tracker left out (region x frames, by reason; --annotate draws them): "
                     + ", ".join(f"{k} {v}" for k, v in sorted(ignored.items(), key=lambda kv: -kv[1])))
    for e in s.errors:
        lines.append(f"error: {e}")
    return "\n".join(lines)


def summary_json(s: ReplaySummary) -> str:
    return json.dumps(s.to_dict(), sort_keys=True)
