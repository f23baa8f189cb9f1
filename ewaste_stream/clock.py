"""Injected time for the live daemon.

Live stream seconds come from a monotonic clock, never ``time.time()``. Everything that
waits (back-off, file pacing, heartbeats) waits through a ``Clock`` so tests can inject a
``FakeClock`` and run reconnect/back-off logic without sleeping on the wall clock.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float: ...  # monotonic seconds

    def wait(self, event: threading.Event, timeout: float) -> bool: ...  # True when event is set


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``Event.wait``."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(max(0.0, timeout))


class FakeClock:
    """Test clock: time moves only when told to (``advance``) or when someone waits.

    ``wait`` advances time by the timeout at once (unless the event is already set) and
    records the request in ``waits``, so back-off sequences can be asserted exactly. It
    yields the CPU for a moment so a waiting thread never spins hot.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._t = float(start)
        self._lock = threading.Lock()
        self.waits: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, dt: float) -> None:
        with self._lock:
            self._t += float(dt)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        with self._lock:
            self.waits.append(float(timeout))
            self._t += max(0.0, float(timeout))
        return event.wait(0.002)


class StreamClock:
    """Stream seconds for one daemon run: ``clock.now() - t0`` (all cameras share t0)."""

    def __init__(self, clock: Clock, t0: float | None = None) -> None:
        self.clock = clock
        self.t0 = clock.now() if t0 is None else float(t0)

    def __call__(self) -> float:
        return max(0.0, self.clock.now() - self.t0)
