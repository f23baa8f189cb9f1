"""Decision sinks: the ZeroMQ PUB publisher (own thread) and the fan-out the pipeline calls.

- ``DecisionPublisher``: the pipeline thread only enqueues (never blocks, never touches the
  socket); the publisher thread owns the PUB socket (SNDHWM set before bind), sends
  ``[topic, JSON]`` per ``ewaste_stream.protocol`` and a heartbeat every ``heartbeat_s``
  carrying ``last_seq``. Send failures (``zmq.Again``, ``ZMQError``) and a full queue become
  ``StatusEvent``s and counters; they never stop inference. Optional CURVE (encryption + an
  allow-list of client keys through ``zmq.auth.ThreadAuthenticator``).
- ``DecisionSinks``: calls each sink in order (decision log first, then publisher, metrics);
  a failing sink is reported as ``SINK_ERROR`` and the others still run.
- ``JsonlDecisionLog`` lives in ``decision_log`` and is re-exported here.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from loguru import logger

from .clock import MonotonicClock, StreamClock
from .decision_log import JsonlDecisionLog
from .messages import Decision, StatusEvent, StatusKind
from .protocol import Heartbeat, decision_topic, encode_decision, encode_heartbeat, heartbeat_topic

__all__ = ["CurveServer", "DecisionPublisher", "DecisionSinks", "JsonlDecisionLog", "PublishError", "PublisherOptions"]

StatusFn = Callable[[], tuple[str, Mapping[str, float], Mapping[str, int]]]  # status, fps, queue depths


class PublishError(RuntimeError):
    """The publisher could not start (bad endpoint, port in use, bad CURVE keys)."""


@dataclass(frozen=True)
class CurveServer:
    secret_key_file: Path  # the server's ``*.key_secret`` (from ``ewaste-stream keys``)
    allowed_clients_dir: Path  # folder of allowed clients' public ``*.key`` files


@dataclass(frozen=True)
class PublisherOptions:
    hwm: int = 10_000  # ZeroMQ send high-water mark per subscriber (messages)
    heartbeat_s: float = 1.0
    queue_size: int = 100_000  # decisions waiting for the publisher thread
    linger_s: float = 1.0  # at close: how long ZeroMQ may still push queued messages out
    curve: CurveServer | None = None


@dataclass
class PublisherStats:
    published: int = 0
    heartbeats: int = 0
    send_again: int = 0
    send_errors: int = 0
    queue_full: int = 0
    last_seq: int = 0  # newest seq handed to the socket (or lost on the way: see heartbeat)
    lost_seqs: list[int] = field(default_factory=list)  # recent seqs that could not be sent


class DecisionPublisher:
    """ZeroMQ PUB in its own thread, fed by a bounded queue. Call ``start()`` then use it as an
    ``on_decision`` callable; ``close(timeout)`` drains what is queued (bounded) and stops."""

    def __init__(self, endpoint: str, line: str, boot_id: str, options: PublisherOptions = PublisherOptions(),
                 clock: StreamClock | None = None, on_status: Callable[[StatusEvent], None] | None = None) -> None:
        self.endpoint = endpoint
        self.line = line
        self.boot_id = boot_id
        self.options = options
        self.clock = clock or StreamClock(MonotonicClock())
        self.on_status = on_status
        self.status_fn: StatusFn = lambda: ("ok", {}, {})
        self.stats = PublisherStats()
        self.bound_endpoint: str | None = None
        self._q: queue.Queue[Decision] = queue.Queue(options.queue_size)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None
        self._max_dropped_seq = 0
        self._drain_timeout = 5.0

    # ---- caller side (pipeline thread) --------------------------------------------------
    def start(self, timeout: float = 10.0) -> str:
        """Bind in the publisher thread; return the bound endpoint (port 0 -> the real port)."""
        self._thread = threading.Thread(target=self._run, name="zmq-publisher", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise PublishError(f"publisher did not bind {self.endpoint} within {timeout:.0f} s")
        if self._error is not None:
            raise PublishError(f"cannot publish on {self.endpoint}: {self._error}") from self._error
        return self.bound_endpoint or self.endpoint

    def __call__(self, decision: Decision) -> None:
        try:
            self._q.put_nowait(decision)
        except queue.Full:
            self.stats.queue_full += 1
            self._max_dropped_seq = max(self._max_dropped_seq, decision.seq)
            self._status(StatusKind.SINK_ERROR, "publisher queue full: decision not published (it is in the log)",
                         {"seq": decision.seq, "queue_full_total": self.stats.queue_full})

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def queue_depth(self) -> int:
        return self._q.qsize()

    def close(self, timeout: float = 5.0) -> int:
        """Publish what is queued (for at most ``timeout`` s), send a final ``stopping``
        heartbeat, close. Returns how many queued decisions could not be sent."""
        self._drain_timeout = max(0.0, timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout + self.options.linger_s + 2.0)
        left = self._q.qsize()
        if left:
            logger.error(f"publisher: {left} decisions still queued at shutdown were not published (they are in the log)")
        return left

    # ---- publisher thread ---------------------------------------------------------------
    def _run(self) -> None:
        import zmq

        ctx = zmq.Context()
        auth = None
        sock = None
        try:
            sock = ctx.socket(zmq.PUB)
            sock.setsockopt(zmq.SNDHWM, self.options.hwm)  # before bind, or it does not apply
            sock.setsockopt(zmq.LINGER, int(self.options.linger_s * 1000))
            if self.options.curve is not None:
                auth = _setup_curve_server(ctx, sock, self.options.curve)
            sock.bind(self.endpoint)
            self.bound_endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except (zmq.ZMQError, OSError, ValueError) as exc:
            self._error = exc
            self._ready.set()
            _close(sock, auth, ctx, linger=0)
            return
        self._ready.set()
        logger.info(f"publishing decisions on {self.bound_endpoint} (topic {decision_topic(self.line).decode()}"
                    f"{', CURVE' if auth else ''})")
        try:
            self._loop(sock)
        finally:
            _close(sock, auth, ctx, linger=None)

    def _loop(self, sock) -> None:  # noqa: ANN001 (zmq.Socket)
        clock = self.clock.clock
        next_hb = clock.now()
        deadline: float | None = None
        while True:
            if self._stop.is_set() and deadline is None:
                deadline = clock.now() + self._drain_timeout
            if clock.now() >= next_hb:
                self._send_heartbeat(sock, "stopping" if self._stop.is_set() else None)
                next_hb = clock.now() + self.options.heartbeat_s
            try:
                d = self._q.get(timeout=0.05 if deadline is None else 0.001)
            except queue.Empty:
                if deadline is not None:
                    break
                continue
            self._send_decision(sock, d)
            if deadline is not None and clock.now() > deadline:
                break
        self._send_heartbeat(sock, "stopping")

    def _send(self, sock, parts: Sequence[bytes], what: str, seq: int | None) -> bool:  # noqa: ANN001
        import zmq

        try:
            sock.send_multipart(parts, flags=zmq.NOBLOCK)
            return True
        except zmq.Again:
            self.stats.send_again += 1
            detail = f"{what} not sent: ZeroMQ queue full (zmq.Again)"
        except zmq.ZMQError as exc:
            self.stats.send_errors += 1
            detail = f"{what} not sent: {exc}"
            logger.error(f"publisher: {detail}")
        if seq is not None:
            self.stats.lost_seqs = (self.stats.lost_seqs + [seq])[-100:]
        self._status(StatusKind.SINK_ERROR, detail, {"seq": seq} if seq is not None else {})
        return False

    def _send_decision(self, sock, d: Decision) -> None:  # noqa: ANN001
        self.stats.last_seq = max(self.stats.last_seq, d.seq)
        if self._send(sock, [decision_topic(self.line), encode_decision(d)], f"decision seq {d.seq}", d.seq):
            self.stats.published += 1

    def _send_heartbeat(self, sock, status: str | None) -> None:  # noqa: ANN001
        try:
            st, fps, depths = self.status_fn()
        except Exception as exc:  # a broken status callback must not stop publishing
            logger.error(f"publisher: status callback failed: {exc}")
            st, fps, depths = "degraded", {}, {}
        last = self.stats.last_seq
        if self._q.empty():
            last = max(last, self._max_dropped_seq)  # so subscribers also notice queue-full losses
        hb = Heartbeat(self.line, self.boot_id, last, self.clock(), status or st, dict(fps),
                       {**dict(depths), "publisher": self._q.qsize()})
        if self._send(sock, [heartbeat_topic(self.line), encode_heartbeat(hb)], "heartbeat", None):
            self.stats.heartbeats += 1

    def _status(self, kind: StatusKind, detail: str, data: dict) -> None:
        if self.on_status is None:
            return
        try:
            self.on_status(StatusEvent(kind, "publisher", self.clock(), detail, data))
        except Exception as exc:
            logger.error(f"publisher: status sink failed: {exc}")


def _setup_curve_server(ctx, sock, curve: CurveServer):  # noqa: ANN001, ANN202
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    if not curve.allowed_clients_dir.is_dir():
        raise ValueError(f"CURVE allowed-clients folder {curve.allowed_clients_dir} does not exist")
    public, secret = zmq.auth.load_certificate(str(curve.secret_key_file))
    if secret is None:
        raise ValueError(f"{curve.secret_key_file} holds no secret key (give the server's .key_secret file)")
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(curve.allowed_clients_dir))
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    n = len(list(curve.allowed_clients_dir.glob("*.key")))
    logger.info(f"CURVE on: {n} allowed client key(s) in {curve.allowed_clients_dir}")
    return auth


def _close(sock, auth, ctx, linger: int | None) -> None:  # noqa: ANN001
    if sock is not None:
        sock.close(linger=linger)
    if auth is not None:
        auth.stop()
    ctx.term()


class DecisionSinks:
    """Fan one decision out to several sinks, in order; a failing sink never stops the others
    (or the pipeline): it becomes a ``SINK_ERROR`` status event and a counter."""

    def __init__(self, sinks: Sequence[tuple[str, Callable[[Decision], None]]],
                 on_status: Callable[[StatusEvent], None] | None = None) -> None:
        self.sinks = list(sinks)
        self.on_status = on_status
        self.errors: dict[str, int] = {name: 0 for name, _ in self.sinks}

    def __call__(self, decision: Decision) -> None:
        for name, sink in self.sinks:
            try:
                sink(decision)
            except Exception as exc:  # noqa: BLE001 - reported, counted, never swallowed silently
                self.errors[name] += 1
                logger.error(f"decision sink {name!r} failed for seq {decision.seq}: {exc}")
                if self.on_status is not None:
                    self.on_status(StatusEvent(StatusKind.SINK_ERROR, name, decision.t_decided,
                                               f"sink failed: {exc}", {"seq": decision.seq}))
