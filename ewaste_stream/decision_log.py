"""The JSONL decision log: every decision, one wire-format JSON object a line.

It is written by the pipeline thread *before* and independently of ZeroMQ publishing, so a
decision exists on disk even when no subscriber listens. A restarted PLC bridge catches up
with ``read_decisions`` (command ``ewaste-stream decisions --since-seq N``).

Durability: every line is written and flushed to the OS at once (a crash of this process
loses nothing); ``fsync`` decides when the OS must put it on the disk (power loss):
``always`` (each decision), ``interval`` (at most ``fsync_interval_s`` apart) or ``never``.
Size rotation keeps months of running bounded: ``PATH`` -> ``PATH.1`` -> ... -> ``PATH.keep``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from loguru import logger

from .messages import Decision
from .protocol import SCHEMA, encode_decision

FsyncPolicy = Literal["always", "interval", "never"]


class JsonlDecisionLog:
    """Append-only decision log; a plain ``on_decision`` callable."""

    def __init__(self, path: str | Path, fsync: FsyncPolicy = "interval", fsync_interval_s: float = 1.0,
                 max_bytes: int = 256 << 20, keep: int = 20, clock: Callable[[], float] | None = None) -> None:
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"JsonlDecisionLog: fsync must be always, interval or never, got {fsync!r}")
        if max_bytes < 1 or keep < 1:
            raise ValueError("JsonlDecisionLog: max_bytes and keep must be >= 1")
        import time

        self.path = Path(path)
        self.fsync = fsync
        self.fsync_interval_s = float(fsync_interval_s)
        self.max_bytes = int(max_bytes)
        self.keep = int(keep)
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._fh = None
        self._size = 0
        self._last_sync = self._clock()
        self._dirty = False
        self.written = 0
        self.last_seq = 0
        self.fsyncs = 0
        self.rotations = 0

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 (kept open)
        self._size = self._fh.tell()

    def __call__(self, decision: Decision) -> None:
        line = encode_decision(decision) + b"\n"
        with self._lock:
            if self._fh is None:
                self._open()
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            self._fh.write(line)  # unbuffered: in the OS page cache now
            self._size += len(line)
            self._dirty = True
            self.written += 1
            self.last_seq = decision.seq
            self._maybe_sync(force=self.fsync == "always")

    def _maybe_sync(self, force: bool = False) -> None:
        if not self._dirty or self._fh is None or self.fsync == "never":
            return
        now = self._clock()
        if force or now - self._last_sync >= self.fsync_interval_s:
            os.fsync(self._fh.fileno())
            self._last_sync = now
            self._dirty = False
            self.fsyncs += 1

    def sync(self) -> None:
        """fsync now if anything is unsynced (called on a timer and at shutdown)."""
        with self._lock:
            if self._fh is not None and self._dirty and self.fsync != "never":
                os.fsync(self._fh.fileno())
                self._last_sync = self._clock()
                self._dirty = False
                self.fsyncs += 1

    def tick(self) -> None:
        """Interval policy: sync if the interval has passed (call now and then from any thread)."""
        with self._lock:
            self._maybe_sync()

    def _rotate(self) -> None:
        self._maybe_sync(force=True)
        self._fh.close()
        self._fh = None
        for i in range(self.keep, 0, -1):
            src = self.path if i == 1 else self.path.with_name(f"{self.path.name}.{i - 1}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i}"))
        self.rotations += 1
        logger.info(f"decision log rotated: {self.path} -> {self.path.name}.1 (keeping {self.keep})")
        self._open()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                if self.fsync != "never" and self._dirty:
                    os.fsync(self._fh.fileno())
                self._fh.close()
                self._fh = None

    def stats(self) -> dict[str, Any]:
        return {"path": str(self.path), "written": self.written, "last_seq": self.last_seq,
                "fsyncs": self.fsyncs, "rotations": self.rotations}


def log_files(path: str | Path) -> list[Path]:
    """The log and its rotated files, oldest first (``PATH.N`` ... ``PATH.1``, ``PATH``)."""
    p = Path(path)
    rotated = []
    for f in p.parent.glob(f"{p.name}.*"):
        suffix = f.name[len(p.name) + 1:]
        if suffix.isdigit():
            rotated.append((int(suffix), f))
    return [f for _, f in sorted(rotated, reverse=True)] + ([p] if p.exists() else [])


def iter_log(path: str | Path, on_bad: Callable[[Path, int, str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every decision object in the log and its rotated files, oldest first. Lines that are not
    schema-1 JSON objects (e.g. a torn last line after power loss) go to ``on_bad``."""
    for f in log_files(path):
        with open(f, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                try:
                    obj = json.loads(raw)
                    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA or "seq" not in obj:
                        raise ValueError("not a schema-1 decision")
                except ValueError as exc:
                    if on_bad is not None:
                        on_bad(f, n, str(exc))
                    continue
                yield obj


class BootNotFound(LookupError):
    pass


def newest_boot(path: str | Path) -> str | None:
    """boot_id of the last decision in the log (reads only the tail of the newest file)."""
    for f in reversed(log_files(path)):
        with open(f, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 65536))
            for raw in reversed(fh.read().splitlines()):
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(obj, dict) and obj.get("boot_id"):
                    return str(obj["boot_id"])
    return None


def read_decisions(path: str | Path, since_seq: int = 0, boot_id: str | None = None,
                   on_bad: Callable[[Path, int, str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Decisions after a point, in log order (streams; the log may be gigabytes).

    - ``boot_id`` given: that boot's decisions with ``seq > since_seq``, then every decision of
      the boots logged after it (a bridge that was down across a daemon restart gets all).
    - ``boot_id`` None: the newest boot in the log, ``seq > since_seq``.
    Raises ``BootNotFound`` (after yielding nothing) when ``boot_id`` is not in the log."""
    if boot_id is None:
        boot_id = newest_boot(path)
        if boot_id is None:
            return
    found = False
    for r in iter_log(path, on_bad):
        if not found:
            if r.get("boot_id") != boot_id:
                continue
            found = True
        if r.get("boot_id") != boot_id or int(r["seq"]) > since_seq:
            yield r
    if not found:
        raise BootNotFound(boot_id)
