"""A live camera: one capture thread into a bounded drop-oldest queue.

The capture thread never waits for the pipeline. Every dropped frame is counted and emitted
as a ``StatusEvent``. A lost source (read failure, end of a network stream, or a *frozen*
stream that delivers nothing for ``frozen_after_s``) is reconnected with bounded exponential
back-off; the state is visible in ``info()`` (health endpoint). Network streams are read in
a tight loop so the queue always holds the newest frames (OpenCV's own buffer setting is
ignored for network streams). File sources are paced at their frame rate and can loop.

All waiting goes through the injected clock; frame timestamps are live stream seconds.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal

import numpy as np
from loguru import logger

from ..clock import MonotonicClock, StreamClock
from ..messages import Frame, StatusEvent, StatusKind
from .opencv import Reader, SourceOpenError, open_reader
from .queue import FrameQueue
from .spec import SourceSpec

SourceState = Literal["starting", "running", "reconnecting", "ended", "stopped"]
OpenFn = Callable[[SourceSpec, str], Reader]
DEFAULT_FILE_FPS = 25.0


@dataclass(frozen=True, slots=True)
class LivePolicy:
    queue_size: int = 3
    frozen_after_s: float = 5.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    loop: bool = False  # files: start again at the end
    fps: float | None = None  # files: pacing rate (None: the file's own fps)

    def backoff(self, attempt: int) -> float:
        """Delay before reconnect attempt ``attempt`` (1, 2, ...): min * 2^(attempt-1), capped."""
        if attempt <= 0:
            return 0.0
        return min(self.reconnect_max_s, self.reconnect_min_s * 2.0 ** min(attempt - 1, 30))


@dataclass
class SourceContext:
    """What all sources of one daemon share: the stream clock, the status sink, the condition
    their queues notify (so one consumer can wait on every camera)."""

    clock: StreamClock = field(default_factory=lambda: StreamClock(MonotonicClock()))
    on_status: Callable[[StatusEvent], None] | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)


class LiveSource:
    """``FrameSource`` for live capture (camera, URL, or a file played as a camera)."""

    def __init__(self, camera: str, spec: SourceSpec, policy: LivePolicy, ctx: SourceContext,
                 open_fn: OpenFn = open_reader) -> None:
        self.camera = camera
        self.spec = spec
        self.policy = policy
        self.ctx = ctx
        self._open_fn = open_fn
        self.queue = FrameQueue(policy.queue_size, "drop_oldest", ctx.cond)
        self.fps = policy.fps or DEFAULT_FILE_FPS
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._gen = 0
        self._threads: list[threading.Thread] = []
        self.state: SourceState = "starting"
        self.frames_captured = 0
        self.reconnects = 0
        self.reconnect_attempts = 0
        self.last_error = ""
        self._last_frame_at = ctx.clock()
        self._lost_at: float | None = None
        self._next_seq = 0
        self._fps_est = 0.0

    # ---- life cycle -------------------------------------------------------------------
    def start(self, require_open: bool = True) -> None:
        """Open and start capturing. With ``require_open`` a source that cannot be opened
        raises ``SourceOpenError`` now; otherwise the capture thread keeps retrying."""
        reader = None
        if require_open:
            reader = self._open_fn(self.spec, self.camera)
            self._set_fps(reader)
            self.state = "running"
        self._last_frame_at = self.ctx.clock()
        self._spawn(reader)

    def close(self, timeout: float = 2.0) -> None:
        """Stop capture (the queue keeps what it holds, see ``FrameMux.drain``)."""
        self._stop.set()
        with self._lock:
            if self.state not in ("ended",):
                self.state = "stopped"
        self.queue.wake()
        for t in self._threads:
            t.join(timeout)

    @property
    def finished(self) -> bool:
        return self.state in ("ended", "stopped")

    def frames(self) -> Iterator[Frame]:
        while True:
            frame = self.queue.get(0.2)
            if frame is not None:
                yield frame
                continue
            self.check()
            if self.finished and len(self.queue) == 0:
                return

    # ---- watchdog -----------------------------------------------------------------------
    def check(self) -> None:
        """Frozen-stream watchdog; call now and then (the daemon calls it every loop)."""
        now = self.ctx.clock()
        with self._lock:
            frozen = self.state == "running" and now - self._last_frame_at > self.policy.frozen_after_s
            if frozen:
                self._gen += 1  # the stuck thread exits when its read returns
        if frozen:
            self._mark_lost(f"frozen: no frame for {now - self._last_frame_at:.1f} s")
            self._spawn(None)

    def info(self) -> dict:
        now = self.ctx.clock()
        with self._lock:
            return {
                "state": self.state, "source": self.spec.redacted(), "kind": self.spec.kind,
                "frames": self.frames_captured, "dropped": self.queue.dropped, "queue_depth": len(self.queue),
                "reconnects": self.reconnects, "reconnect_attempts": self.reconnect_attempts,
                "last_error": self.last_error, "fps": round(self._fps_est, 2),
                "last_frame_age_s": round(now - self._last_frame_at, 3),
            }

    # ---- capture thread -----------------------------------------------------------------
    def _spawn(self, reader: Reader | None) -> None:
        with self._lock:
            gen = self._gen
        t = threading.Thread(target=self._run, args=(gen, reader), name=f"capture-{self.camera}-{gen}", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def _alive(self, gen: int) -> bool:
        with self._lock:
            return not self._stop.is_set() and gen == self._gen

    def _run(self, gen: int, reader: Reader | None) -> None:
        attempt = 0
        due = self.ctx.clock.clock.now()
        try:
            while self._alive(gen):
                if reader is None:
                    reader, attempt = self._reopen(gen, attempt)
                    due = self.ctx.clock.clock.now()
                    continue
                img = reader.read()
                if not self._alive(gen):
                    break
                if img is None:
                    reader.release()
                    reader = None
                    if not self._end_of_stream(gen):
                        break
                    continue
                self._emit(gen, img)
                attempt = 0
                due = self._pace(due)
        except Exception as exc:  # a backend bug must not kill the thread silently
            logger.exception(f"camera {self.camera}: capture thread failed: {exc}")
            self._mark_lost(f"capture error: {exc}")
        finally:
            if reader is not None:
                reader.release()

    def _end_of_stream(self, gen: int) -> bool:
        """Return True to keep going (reopen), False to end the thread."""
        if self.spec.kind == "file" and not self.policy.loop:
            with self._lock:
                self.state = "ended"
            logger.info(f"camera {self.camera}: end of file {self.spec.raw}")
            self.queue.wake()
            return False
        if self.spec.kind == "file":
            logger.debug(f"camera {self.camera}: looping {self.spec.raw}")
            return True
        self._mark_lost("stream ended or read failed")
        return True

    def _reopen(self, gen: int, attempt: int) -> tuple[Reader | None, int]:
        delay = self.policy.backoff(attempt)
        if delay > 0 and self.ctx.clock.clock.wait(self._stop, delay):
            return None, attempt
        if not self._alive(gen):
            return None, attempt
        try:
            reader = self._open_fn(self.spec, self.camera)
        except (SourceOpenError, OSError) as exc:
            with self._lock:
                self.reconnect_attempts += 1
            nxt = self.policy.backoff(attempt + 1)
            self._mark_lost(str(getattr(exc, "reason", exc)))
            logger.warning(f"camera {self.camera}: reconnect attempt {attempt + 1} to {self.spec.redacted()} failed "
                           f"({getattr(exc, 'reason', exc)}); next try in {nxt:.1f} s")
            return None, attempt + 1
        self._set_fps(reader)
        with self._lock:
            self._last_frame_at = self.ctx.clock()  # the frozen timer restarts at (re)connect
        return reader, attempt

    def _set_fps(self, reader: Reader) -> None:
        self.fps = self.policy.fps or reader.fps or DEFAULT_FILE_FPS

    def _pace(self, due: float) -> float:
        """Files play at their frame rate; cameras and streams are read as fast as they come."""
        if self.spec.kind != "file":
            return due
        clock = self.ctx.clock.clock
        due += 1.0 / self.fps
        now = clock.now()
        if due < now - 1.0:  # far behind (slow disk, loaded CPU): do not burst to catch up
            return now
        if due > now:
            clock.wait(self._stop, due - now)
        return due

    def _emit(self, gen: int, img: np.ndarray) -> None:
        t = self.ctx.clock()
        with self._lock:
            if gen != self._gen:  # superseded by the watchdog
                return
            recovered = self.state == "reconnecting"
            down_s = t - self._lost_at if self._lost_at is not None else 0.0
            if self.state in ("starting", "reconnecting"):
                self.state = "running"
            if recovered:
                self.reconnects += 1
                self._lost_at = None
            dt = t - self._last_frame_at
            if 0 < dt < 10 and self.frames_captured:
                self._fps_est = 0.9 * self._fps_est + 0.1 / dt if self._fps_est else 1.0 / dt
            self._last_frame_at = t
            seq = self._next_seq
            self._next_seq += 1
            self.frames_captured += 1
        if recovered:
            logger.info(f"camera {self.camera}: source recovered after {down_s:.1f} s ({self.reconnects} reconnects)")
            self._status(StatusKind.SOURCE_RECOVERED, t, "source recovered",
                         {"down_s": round(down_s, 3), "reconnects": self.reconnects})
        dropped = self.queue.put(Frame(self.camera, seq, t, img))
        if dropped is not None:
            self._status(StatusKind.FRAME_DROPPED, t, "queue full, dropped oldest frame",
                         {"seq": dropped.seq, "dropped_total": self.queue.dropped})

    def _mark_lost(self, why: str) -> None:
        t = self.ctx.clock()
        with self._lock:
            self.last_error = why
            first = self.state not in ("reconnecting", "stopped", "ended")
            if first:
                self.state = "reconnecting"
                self._lost_at = t
        if first:
            logger.warning(f"camera {self.camera}: source lost ({why}); reconnecting with back-off")
            self._status(StatusKind.SOURCE_LOST, t, why, {"source": self.spec.redacted()})

    def _status(self, kind: StatusKind, t: float, detail: str, data: dict) -> None:
        if self.ctx.on_status is None:
            return
        try:
            self.ctx.on_status(StatusEvent(kind, self.camera, t, detail, data))
        except Exception as exc:  # a broken status sink must not stop capture
            logger.error(f"camera {self.camera}: status sink failed: {exc}")
