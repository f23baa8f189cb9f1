"""A stage that runs ahead of its consumer on a thread of its own.

The detector's step (belt model, item mask) does not depend on the tracker, so it can work on
the next frame while the pipeline thread tracks this one. Both the live daemon
(``app.DetectorStage``, frames from the cameras' queues) and the replay (``replay.analysed``,
frames from the decoders) run it through :class:`AheadStage`:

- items come from ``take(timeout)`` and are handed to one consumer as ``(item, work(item))``,
  in order;
- at most ``ahead`` of them wait for the consumer, and the thread takes the next item only
  when there is room to hand it over. So it never holds an item while it waits: where the
  source drops (a live camera's drop-oldest queue), the stale items are dropped there,
  counted, and the item worked on next is the newest one;
- ``work`` raising: with ``on_error`` the item is reported and skipped and the thread goes
  on (the daemon: one bad frame must not stop the line); without it the stage ends and the
  consumer gets the exception after the items before it (the replay: the file is broken).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

DONE = object()  # what ``take`` returns once its source has ended
_END = object()


class AheadStage:
    """``take(timeout) -> item | None (nothing yet) | DONE``; ``work(item) -> result``."""

    def __init__(self, take: Callable[[float], Any], work: Callable[[Any], Any], *, ahead: int,
                 on_error: Callable[[Any, Exception], None] | None = None,
                 wake: Callable[[], None] | None = None, name: str = "detector") -> None:
        self.take = take
        self.work = work
        self.on_error = on_error
        self._wake = wake or (lambda: None)
        self.processed = 0
        self.failed: BaseException | None = None  # what ended the thread, if not its source's end
        self._q: queue.SimpleQueue = queue.SimpleQueue()  # bounded by _room (the end marker needs none)
        self._room = threading.Semaphore(max(1, ahead))
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "AheadStage":
        self._thread.start()
        return self

    @property
    def depth(self) -> int:
        """Items waiting for the consumer."""
        return self._q.qsize()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer (see get, drain)
            self.failed = exc
        finally:
            self._q.put(_END)

    def _loop(self) -> None:
        while not self._abort.is_set():
            if not self._room.acquire(timeout=0.1):
                continue
            item = self.take(0.1)
            if item is None:
                self._room.release()
                continue
            if item is DONE:
                return
            try:
                result = self.work(item)
            except Exception as exc:
                if self.on_error is None:
                    raise
                self._room.release()
                self.on_error(item, exc)
                continue
            self.processed += 1
            self._q.put((item, result))

    def _next(self, timeout: float) -> Any:
        try:
            got = self._q.get(timeout=timeout)
        except queue.Empty:
            return None
        if got is _END:
            self._q.put(_END)  # keep the end visible to later calls
        else:
            self._room.release()
        return got

    def get(self, timeout: float) -> tuple[Any, Any] | None:
        """The next ``(item, result)``, or None after ``timeout`` or once the stage has ended."""
        got = self._next(timeout)
        return None if got is _END else got

    def drain(self, until: threading.Event | None = None) -> Iterator[tuple[Any, Any]]:
        """Every ``(item, result)`` until the stage ends (the source's end, ``abort``, a
        failure: see ``failed``), or until ``until`` is set while nothing is waiting."""
        while True:
            got = self._next(0.1)
            if got is _END:
                return
            if got is None:
                if (until is not None and until.is_set()) or (not self._thread.is_alive() and self._q.empty()):
                    return
                continue
            yield got

    def abort(self, join_s: float = 5.0) -> None:
        """Stop now; items not yet handed over are not worked on."""
        self._abort.set()
        self._wake()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=join_s)
