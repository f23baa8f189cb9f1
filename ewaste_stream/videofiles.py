"""Video files for replay: probing, decoding threads, and the real-time pacer.

Each file is decoded on its own thread into a small blocking queue (OpenCV releases the
GIL while decoding), together with the detector's shrunk copy of the frame, and the
files are merged in stream-time order (``frame_index / fps``, shifted by the camera's
``frame_offset``). The pacer instead releases frames at the video's frame rate into a
drop-oldest buffer and counts what it drops, like a live camera.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .detect import shrink
from .messages import Frame

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


class FileReader(threading.Thread):
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
            if not put_unless_stopped(self.q, _EOF, self.stop):  # stopped early: still wake a consumer waiting on an empty queue
                try:
                    self.q.put_nowait(_EOF)
                except queue.Full:
                    pass  # it has frames to take: it is not waiting

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
                put_unless_stopped(self.q, (frame, time.perf_counter(), small), self.stop)
        finally:
            cap.release()
        return n


def put_unless_stopped(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Queue ``item``, waiting while ``q`` is full; False when ``stop`` is set first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def merged_frames(readers: list[FileReader], on_end: Callable[[FileReader, float], None]):
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


class Pacer(threading.Thread):
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
