"""Bounded frame queues with a named drop policy.

Live capture never waits for the pipeline: a full ``drop_oldest`` queue throws away its
oldest frame to make room and returns it, so the caller can count it and emit a
``StatusEvent``. Several queues may share one ``threading.Condition`` so a consumer can wait
on all cameras at once (see ``FrameMux``).
"""

from __future__ import annotations

import collections
import threading
from typing import Literal, Sequence

from ..messages import Frame

DropPolicy = Literal["drop_oldest", "drop_newest"]
LIVE_ANALYSIS_AHEAD = 1  # live: detected frames that may wait for the tracker (app.DetectorStage); more adds latency


class FrameQueue:
    """Thread-safe bounded FIFO of frames. ``put`` never blocks; it returns the dropped frame."""

    def __init__(self, maxsize: int, policy: DropPolicy = "drop_oldest",
                 cond: threading.Condition | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"FrameQueue: maxsize must be >= 1, got {maxsize}")
        if policy not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"FrameQueue: unknown drop policy {policy!r}")
        self.maxsize = maxsize
        self.policy = policy
        self._items: collections.deque[Frame] = collections.deque()
        self._cond = cond or threading.Condition()
        self.dropped = 0
        self.high_water = 0

    @property
    def cond(self) -> threading.Condition:
        return self._cond

    def put(self, frame: Frame) -> Frame | None:
        with self._cond:
            dropped = None
            if len(self._items) >= self.maxsize:
                self.dropped += 1
                if self.policy == "drop_newest":
                    return frame
                dropped = self._items.popleft()
            self._items.append(frame)
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify_all()
            return dropped

    def get_nowait(self) -> Frame | None:
        with self._cond:
            return self._items.popleft() if self._items else None

    def peek_t(self) -> float | None:
        with self._cond:
            return self._items[0].t if self._items else None

    def get(self, timeout: float) -> Frame | None:
        """Wait up to ``timeout`` real seconds for a frame (a consumer-side poll, not a correctness wait)."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class FrameMux:
    """One consumer over many camera queues sharing one condition: ``get`` returns the
    queued frame with the earliest timestamp, so cameras are processed in time order."""

    def __init__(self, queues: Sequence[FrameQueue]) -> None:
        conds = {id(q.cond) for q in queues}
        if len(conds) > 1:
            raise ValueError("FrameMux: all queues must share one Condition")
        self.queues = list(queues)
        self._cond = queues[0].cond if queues else threading.Condition()

    def get(self, timeout: float) -> Frame | None:
        with self._cond:
            frame = self._pop_earliest()
            if frame is None:
                self._cond.wait(timeout)
                frame = self._pop_earliest()
            return frame

    def _pop_earliest(self) -> Frame | None:
        best = None
        for q in self.queues:
            t = q.peek_t()
            if t is not None and (best is None or t < best[0]):
                best = (t, q)
        return best[1].get_nowait() if best else None

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
