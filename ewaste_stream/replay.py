"""Replay video files through the pipeline (``ewaste-stream replay``).

Default: as fast as the machine allows, every queue blocking, so the same files, config
and model give byte-identical decisions every run (stream time is ``frame_index / fps``;
``boot_id`` is derived from the inputs, not random; nothing wall-clock-based goes into a
decision). ``realtime=True`` paces the files to their fps and drops frames like a live
camera would (drop-oldest; every drop is counted).

Several files are frame-synchronous cameras (``config.cameras[i]`` describes file ``i``;
missing entries get ``cam<i>`` with the identity mapping). A camera whose file ends early
is reported and the rest is decided from the others.

Decoding runs on one thread per file (OpenCV releases the GIL while decoding), detection
and tracking on the caller's thread, the classifier on the pipeline's inference thread.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from loguru import logger

from .config import CameraSection, Config
from .detect import shrink, working_size
from .messages import Decision, Frame, StatusEvent

_EOF = object()


class ReplayError(RuntimeError):
    """A video that cannot be replayed; the message names the file."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    path: Path
    camera: str
    fps: float
    frames: int  # as the container reports it (0 if unknown)
    width: int
    height: int
    offset: int  # frames this camera lags the first one


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


def probe(path: str | Path, camera: str, offset: int = 0, fps_override: float | None = None) -> VideoInfo:
    """Open a video to read its fps, size and length; ``ReplayError`` naming the file if it cannot."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise ReplayError(f"{p}: video file not found")
    cap = cv2.VideoCapture(str(p))
    try:
        ok, img = cap.read() if cap.isOpened() else (False, None)
        if not ok or img is None:
            raise ReplayError(f"{p}: cannot decode this video (not a video file, or corrupt)")
        fps = fps_override or float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (0 < fps <= 1000):
            raise ReplayError(f"{p}: the video does not report a frame rate; set cameras[].fps in the config")
        return VideoInfo(p, camera, fps, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), img.shape[1], img.shape[0], offset)
    finally:
        cap.release()


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


class _Reader(threading.Thread):
    """Decodes one file into a bounded queue (blocking) of ``(Frame, t_read)`` or ``_EOF``."""

    def __init__(self, info: VideoInfo, depth: int, stop: threading.Event, loops: int = 1,
                 shrink_to: tuple[int, tuple[int, int]] | None = None) -> None:
        super().__init__(name=f"read-{info.camera}", daemon=True)
        self.info = info
        self.loops = max(1, int(loops))
        self.shrink_to = shrink_to  # (factor, size): also make the detector's small image here
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = stop
        self.count = 0
        self.error: str | None = None

    def run(self) -> None:
        import cv2

        i = 0  # frame index over all loops (stream time keeps running)
        try:
            for _ in range(self.loops):
                n = self._one_pass(cv2.VideoCapture(str(self.info.path)), i)
                i += n
                if self.info.frames and n < self.info.frames - 1 and not self.stop.is_set():
                    self.error = (f"{self.info.path}: ended after {n} of {self.info.frames} frames "
                                  "(truncated or corrupt video)")
                if self.error or self.stop.is_set():
                    break
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            self.error = f"{self.info.path}: cannot decode: {exc}"
        finally:
            self._put(_EOF)

    def _one_pass(self, cap, start: int) -> int:  # noqa: ANN001
        n = 0
        try:
            while not self.stop.is_set():
                ok, img = cap.read()
                if not ok or img is None:
                    break
                t = (start + n - self.info.offset) / self.info.fps
                n += 1
                if t < 0:
                    continue
                frame = Frame(self.info.camera, self.count, t, img)
                self.count += 1
                small = shrink(img, *self.shrink_to) if self.shrink_to else None
                self._put((frame, time.perf_counter(), small))
        finally:
            cap.release()
        return n

    def _put(self, item: object) -> None:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


def _merged(readers: list[_Reader], on_end: Callable[[_Reader, float], None]):
    """Frames of all readers in stream-time order (ties: camera order)."""
    heap: list[tuple[float, int, int, Any]] = []
    last_t = [0.0] * len(readers)
    n = 0

    def pull(k: int) -> None:
        nonlocal n
        item = readers[k].q.get()
        if item is _EOF:
            on_end(readers[k], last_t[k])
            return
        frame = item[0]
        last_t[k] = frame.t
        n += 1
        heapq.heappush(heap, (frame.t, k, n, item))

    for k in range(len(readers)):
        pull(k)
    while heap:
        _, k, _, item = heapq.heappop(heap)
        yield item
        pull(k)


class _Pacer(threading.Thread):
    """Realtime: decodes all files frame by frame at their fps into a drop-oldest buffer."""

    def __init__(self, infos: list[VideoInfo], depth: int, stop: threading.Event) -> None:
        super().__init__(name="pacer", daemon=True)
        self.infos = infos
        self.buf: deque = deque(maxlen=depth)
        self.cv = threading.Condition()
        self.stop = stop
        self.dropped = dict.fromkeys((i.camera for i in infos), 0)
        self.done = False
        self.errors: list[str] = []

    def run(self) -> None:
        import cv2

        caps = [cv2.VideoCapture(str(i.path)) for i in self.infos]
        counts = [0] * len(caps)
        t0 = time.perf_counter()
        try:
            i = 0
            while not self.stop.is_set():
                batch = []
                for k, (cap, info) in enumerate(zip(caps, self.infos)):
                    ok, img = cap.read()
                    t = (i - info.offset) / info.fps
                    if ok and img is not None and t >= 0:
                        batch.append(Frame(info.camera, counts[k], t, img))
                        counts[k] += 1
                if not batch:
                    break
                i += 1
                delay = t0 + batch[0].t - time.perf_counter()
                if delay > 0:
                    self.stop.wait(delay)
                self._push(batch)
        finally:
            for cap in caps:
                cap.release()
            with self.cv:
                self.done = True
                self.cv.notify_all()

    def _push(self, batch: list[Frame]) -> None:
        with self.cv:
            if len(self.buf) == self.buf.maxlen:
                for f in self.buf[0][0]:
                    self.dropped[f.camera] += 1
            self.buf.append((batch, time.perf_counter()))
            self.cv.notify_all()

    def frames(self):
        while True:
            with self.cv:
                while not self.buf and not self.done:
                    self.cv.wait(0.1)
                if not self.buf:
                    return
                batch, t_read = self.buf.popleft()
            for f in batch:
                yield f, t_read, None


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return 0.0


def replay_files(paths: Sequence[str | Path], config: Config, classifier, *,  # noqa: ANN001
                 on_decision: Callable[[Decision], None] | None = None,
                 on_status: Callable[[StatusEvent], None] | None = None,
                 realtime: bool = False, annotate: str | Path | None = None,
                 boot_id: str | None = None, on_frame: Callable[[Frame, Any], None] | None = None,
                 stop: threading.Event | None = None, loops: int = 1) -> ReplaySummary:
    """Run video files through a fresh :class:`Pipeline`; see the module doc.

    Raises ``ReplayError`` (before anything runs) when a file cannot be opened. Errors met
    later (a file ending early) are in ``summary.errors``; what was decided is kept.
    ``loops`` > 1 plays the files again and again (stream time runs on; for soak tests).
    """
    from .pipeline import Pipeline

    rss0 = rss_mb()
    t_start = time.perf_counter()
    config = camera_config(config, len(paths))
    infos = [probe(p, c.id, c.frame_offset, c.fps) for p, c in zip(paths, config.cameras)]
    boot_id = boot_id or replay_boot_id(infos, config, str(classifier.sha256))
    wall_lat: deque[float] = deque(maxlen=100_000)
    cur = {"t_read": 0.0}

    def decided(d: Decision) -> None:
        wall_lat.append(1000.0 * (time.perf_counter() - cur["t_read"]))
        if on_decision is not None:
            on_decision(d)

    pipe = Pipeline(config, classifier, boot_id, decided, on_status)
    stop = stop or threading.Event()
    errors: list[str] = []
    annotator = None
    if annotate is not None:
        from .annotate import Annotator

        annotator = Annotator(annotate, infos[0].fps, (infos[0].width, infos[0].height), pipe)
    t_end = 0.0
    frames = {i.camera: 0 for i in infos}
    finished: dict[str, float] = {}  # camera -> time of its last frame (its file ended)
    pacer, readers = None, []
    try:
        if realtime:
            pacer = _Pacer(infos, max(c.queue_size for c in config.cameras), stop)
            pacer.start()
            source = pacer.frames()
        else:
            readers = [_Reader(i, 8, stop, loops, working_size(config.detector, i.width, i.height)) for i in infos]
            for r in readers:
                r.start()

            def ended(r: _Reader, t: float) -> None:
                finished[r.info.camera] = t
                if r.error:
                    errors.append(r.error)
                    logger.error(r.error)

            source = _merged(readers, ended)
        reported: set[str] = set()
        for frame, t_read, small in source:
            if stop.is_set():
                break
            for cam, t_cam in list(finished.items()) if not realtime else []:
                if cam not in reported and frame.t > t_cam + 1e-9:  # the others go on: it ended early
                    reported.add(cam)
                    logger.warning(f"camera {cam}: its file ended at t={t_cam:.3f} s; deciding from the other camera(s)")
                    pipe.camera_ended(cam, frame.t)
            cur["t_read"] = t_read
            decisions = pipe.process(frame, small)
            frames[frame.camera] += 1
            t_end = max(t_end, frame.t)
            if on_frame is not None:
                on_frame(frame, decisions)
            if annotator is not None and frame.camera == infos[0].camera:
                annotator.write(frame, decisions)
    finally:
        stop.set()
        cur["t_read"] = time.perf_counter()
        try:
            pipe.flush(t_end)
        finally:
            pipe.close()
            if annotator is not None:
                annotator.close()
    if pacer is not None:
        errors.extend(pacer.errors)
    stats = pipe.stats()
    lat = np.asarray(wall_lat)
    return ReplaySummary(
        files=[str(i.path) for i in infos], frames=frames,
        video_s=max(frames.values(), default=0) / infos[0].fps, wall_s=time.perf_counter() - t_start,
        decisions=stats["decisions"], labels=stats["labels"], rejects=stats["rejects"],
        latency_ms_p50=stats["latency_ms_p50"], latency_ms_p99=stats["latency_ms_p99"],
        wall_latency_ms_p50=None if lat.size == 0 else round(float(np.percentile(lat, 50)), 2),
        wall_latency_ms_p99=None if lat.size == 0 else round(float(np.percentile(lat, 99)), 2),
        stage_s=stats["stage_s"], inference_s=stats["inference_s"], views=stats["views"],
        dropped=dict(pacer.dropped) if pacer else {}, rss_mb_start=rss0, rss_mb_end=rss_mb(),
        errors=errors, pipeline=stats)


def format_summary(s: ReplaySummary) -> str:
    """Human-readable summary for the end of a replay."""
    lines = [
        f"replayed {len(s.files)} file(s): {sum(s.frames.values())} frames, {s.video_s:.2f} s of video "
        f"in {s.wall_s:.2f} s ({s.realtime_factor:.2f}x real time, {s.fps:.1f} frames/s per camera)",
        f"items: {s.decisions} ({s.items_per_s:.1f} items/s)  views classified: {s.views}",
        "per class: " + (", ".join(f"{k} {v}" for k, v in sorted(s.labels.items())) or "-"),
        "rejects: " + (", ".join(f"{k} {v}" for k, v in sorted(s.rejects.items())) or "none"),
        f"decision latency: stream p50 {s.latency_ms_p50} ms, p99 {s.latency_ms_p99} ms (line -> decision); "
        f"wall p50 {s.wall_latency_ms_p50} ms, p99 {s.wall_latency_ms_p99} ms (frame read -> decision)",
        "stage time (s): " + ", ".join(f"{k} {v:.2f}" for k, v in s.stage_s.items())
        + f", classifier thread {s.inference_s:.2f}",
        f"memory: RSS {s.rss_mb_start:.0f} MB at start, {s.rss_mb_end:.0f} MB at end",
    ]
    if any(s.dropped.values()):
        lines.append("dropped frames (realtime): " + ", ".join(f"{k} {v}" for k, v in s.dropped.items()))
    for e in s.errors:
        lines.append(f"error: {e}")
    return "\n".join(lines)


def summary_json(s: ReplaySummary) -> str:
    return json.dumps(s.to_dict(), sort_keys=True)
