"""Reference subscriber: the starting point of a PLC bridge.

``SeqTracker`` is the pure part (no sockets, no clock of its own): it is fed decisions and
heartbeats and says when something is wrong - a seq gap (decisions missed: slow subscriber,
network, HWM), a boot change (the daemon restarted; seq starts again at 1), duplicates, and
heartbeat loss (nothing heard for 3 heartbeat periods: daemon down, cable, wrong key).
``DecisionSubscriber`` wraps a ZeroMQ SUB socket (optionally CURVE) around it.
See docs/WIRE.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .messages import Decision
from .protocol import Heartbeat, ProtocolError, decode_decision, decode_heartbeat

NoticeKind = Literal["joined", "gap", "boot_change", "duplicate", "heartbeat_lost", "heartbeat_restored",
                     "daemon_stopped", "no_contact", "bad_message"]
DEFAULT_HEARTBEAT_S = 1.0
MISSED_PERIODS = 3  # heartbeat loss after this many periods of silence


@dataclass(frozen=True, slots=True)
class Notice:
    kind: NoticeKind
    line: str
    message: str
    first_missing: int | None = None  # gap: the missed seqs are first_missing..last_missing
    last_missing: int | None = None
    boot_id: str | None = None

    @property
    def missing(self) -> int:
        if self.first_missing is None or self.last_missing is None:
            return 0
        return self.last_missing - self.first_missing + 1

    def to_dict(self) -> dict:
        return {"event": self.kind, "line": self.line, "message": self.message, "first_missing": self.first_missing,
                "last_missing": self.last_missing, "missing": self.missing, "boot_id": self.boot_id}


@dataclass
class _LineState:
    boot_id: str | None = None
    last_seq: int | None = None  # newest seq known to exist (received, or announced by a heartbeat)
    last_hb_at: float | None = None  # local clock
    last_hb_t: float | None = None  # publisher stream time of the last heartbeat
    period: float = DEFAULT_HEARTBEAT_S
    lost: bool = False
    stopping: bool = False  # the last heartbeat said "stopping": silence after it is a planned stop


@dataclass
class TrackerStats:
    decisions: int = 0
    heartbeats: int = 0
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    boot_changes: int = 0
    heartbeat_losses: int = 0
    silent_start: bool = False  # nothing at all heard for a heartbeat timeout after connecting
    bad_messages: int = 0
    by_line: dict[str, int] = field(default_factory=dict)


class SeqTracker:
    """Gap / boot / heartbeat bookkeeping per line. ``now`` is the caller's monotonic clock."""

    def __init__(self, heartbeat_timeout_s: float | None = None, started_at: float = 0.0) -> None:
        self.heartbeat_timeout_s = heartbeat_timeout_s  # None: 3 observed heartbeat periods
        self.started_at = started_at
        self.lines: dict[str, _LineState] = {}
        self.stats = TrackerStats()
        self._never_heard_reported = False

    def _boot(self, line: str, boot_id: str) -> tuple[_LineState, list[Notice]]:
        st = self.lines.setdefault(line, _LineState())
        if st.boot_id == boot_id:
            return st, []
        notices = []
        if st.boot_id is not None:
            self.stats.boot_changes += 1
            notices.append(Notice("boot_change", line, f"daemon restarted: boot {st.boot_id} -> {boot_id}; "
                                  "seq starts again at 1 (decisions of the old boot after "
                                  f"seq {st.last_seq} are only in its log)", boot_id=boot_id))
            st.last_seq = 0
        st.boot_id = boot_id
        return st, notices

    def on_decision(self, d: Decision) -> list[Notice]:
        self.stats.decisions += 1
        self.stats.by_line[d.line] = self.stats.by_line.get(d.line, 0) + 1
        st, notices = self._boot(d.line, d.boot_id)
        if st.last_seq is None:
            if d.seq > 1:
                notices.append(Notice("joined", d.line, f"joined boot {d.boot_id} at seq {d.seq} "
                                      f"(decisions 1..{d.seq - 1} were before this subscriber; "
                                      "catch up with `ewaste-stream decisions`)", boot_id=d.boot_id))
        elif d.seq > st.last_seq + 1:
            notices.append(self._gap(d.line, d.boot_id, st.last_seq + 1, d.seq - 1))
        elif d.seq <= st.last_seq:
            self.stats.duplicates += 1
            notices.append(Notice("duplicate", d.line, f"seq {d.seq} again or out of order (newest known {st.last_seq})",
                                  boot_id=d.boot_id))
        st.last_seq = d.seq if st.last_seq is None else max(st.last_seq, d.seq)
        return notices

    def on_heartbeat(self, hb: Heartbeat, now: float) -> list[Notice]:
        self.stats.heartbeats += 1
        st, notices = self._boot(hb.line, hb.boot_id)
        if st.last_hb_t is not None and 0 < hb.t - st.last_hb_t < 3600:
            st.period = hb.t - st.last_hb_t
        st.last_hb_at, st.last_hb_t = now, hb.t
        st.stopping = hb.status == "stopping"
        if st.lost:
            st.lost = False
            notices.append(Notice("heartbeat_restored", hb.line, "heartbeats are back", boot_id=hb.boot_id))
        if st.last_seq is None:
            st.last_seq = hb.last_seq  # decisions before this point happened before we listened
        elif hb.last_seq > st.last_seq:
            notices.append(self._gap(hb.line, hb.boot_id, st.last_seq + 1, hb.last_seq))
            st.last_seq = hb.last_seq
        return notices

    def check(self, now: float) -> list[Notice]:
        """Heartbeat loss: call regularly (e.g. after each receive timeout)."""
        notices = []
        for line, st in self.lines.items():
            timeout = self.heartbeat_timeout_s or MISSED_PERIODS * st.period
            if st.last_hb_at is not None and not st.lost and now - st.last_hb_at > timeout:
                st.lost = True
                if st.stopping:
                    notices.append(Notice("daemon_stopped", line, f"the daemon stopped cleanly (last seq {st.last_seq})",
                                          boot_id=st.boot_id))
                    continue
                self.stats.heartbeat_losses += 1
                notices.append(Notice("heartbeat_lost", line, f"no heartbeat for {now - st.last_hb_at:.1f} s "
                                      "(daemon stopped or unreachable?)", boot_id=st.boot_id))
        timeout = self.heartbeat_timeout_s or MISSED_PERIODS * DEFAULT_HEARTBEAT_S
        if not self.lines and not self._never_heard_reported and now - self.started_at > timeout:
            self._never_heard_reported = True
            self.stats.silent_start = True
            notices.append(Notice("no_contact", "*", f"nothing heard for {now - self.started_at:.1f} s since "
                                  "connecting: wrong endpoint or line, daemon down, or CURVE key not allowed"))
        return notices

    def bad_message(self, topic: bytes, err: str) -> Notice:
        self.stats.bad_messages += 1
        return Notice("bad_message", "*", f"could not decode a message on {topic!r}: {err}")

    def _gap(self, line: str, boot_id: str, first: int, last: int) -> Notice:
        self.stats.gaps += 1
        self.stats.missing += last - first + 1
        return Notice("gap", line, f"missed seq {first}..{last} ({last - first + 1} decisions); "
                      f"catch up with `ewaste-stream decisions --boot-id {boot_id} --since-seq {first - 1}`",
                      first, last, boot_id)


@dataclass(frozen=True)
class CurveClient:
    server_public_file: Path  # the server's public ``.key``
    secret_file: Path  # this client's ``.key_secret`` (holds its public key too)


@dataclass(frozen=True, slots=True)
class Received:
    """One message: a decision or a heartbeat (exactly one set), plus what the tracker noticed."""

    decision: Decision | None = None
    heartbeat: Heartbeat | None = None
    notices: tuple[Notice, ...] = ()


class DecisionSubscriber:
    """ZeroMQ SUB for one line (or all with ``line=None``). ``recv(timeout)`` returns a
    ``Received`` or None on timeout; ``check()`` reports heartbeat loss."""

    def __init__(self, endpoint: str, line: str | None = None, curve: CurveClient | None = None,
                 rcvhwm: int = 100_000, heartbeat_timeout_s: float | None = None, clock=None) -> None:  # noqa: ANN001
        import time

        import zmq

        self._zmq = zmq
        self._now = clock or time.monotonic
        self.tracker = SeqTracker(heartbeat_timeout_s, started_at=self._now())
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            _setup_curve_client(self.sock, curve)
        self.sock.setsockopt(zmq.SUBSCRIBE, f"ewaste/{line}/".encode() if line else b"ewaste/")
        self.sock.connect(endpoint)
        self.endpoint = endpoint
        self._pending: list[Received] = []

    def recv(self, timeout_s: float) -> Received | None:
        if self._pending:
            return self._pending.pop(0)
        return self._recv_socket(timeout_s)

    def _recv_socket(self, timeout_s: float) -> Received | None:
        if not self.sock.poll(int(max(0.0, timeout_s) * 1000)):
            return None
        topic, *rest = self.sock.recv_multipart()
        payload = rest[0] if rest else b""
        try:
            if topic.endswith(b"/decision"):
                d = decode_decision(payload)
                return Received(decision=d, notices=tuple(self.tracker.on_decision(d)))
            if topic.endswith(b"/heartbeat"):
                hb = decode_heartbeat(payload)
                return Received(heartbeat=hb, notices=tuple(self.tracker.on_heartbeat(hb, self._now())))
            raise ProtocolError("unknown topic")
        except ProtocolError as exc:
            return Received(notices=(self.tracker.bad_message(topic, str(exc)),))

    def check(self) -> list[Notice]:
        return self.tracker.check(self._now())

    def wait_for_heartbeat(self, timeout_s: float) -> Heartbeat | None:
        """Block (bounded) until the first heartbeat: proves the subscription is live (PUB/SUB
        slow-joiner), so decisions published after it are all delivered."""
        deadline = self._now() + timeout_s
        while (left := deadline - self._now()) > 0:
            r = self._recv_socket(min(left, 0.1))
            if r is not None and r.heartbeat is not None:
                return r.heartbeat
            if r is not None:
                self._pending.append(r)  # a decision that raced the first heartbeat: keep it
        return None

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


def _setup_curve_client(sock, curve: CurveClient) -> None:  # noqa: ANN001
    import zmq.auth

    server_public, _ = zmq.auth.load_certificate(str(curve.server_public_file))
    public, secret = zmq.auth.load_certificate(str(curve.secret_file))
    if secret is None:
        raise ValueError(f"{curve.secret_file} holds no secret key (give this client's .key_secret file)")
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret
