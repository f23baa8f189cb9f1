"""SeqTracker: gap, boot-change, duplicate and heartbeat-loss detection (pure, no sockets)."""

from __future__ import annotations

import pytest

from ewaste_stream.protocol import Heartbeat
from ewaste_stream.subscriber import SeqTracker
from ewaste_stream.testing import make_decision


def _hb(last_seq: int, t: float, boot: str = "A", line: str = "line1", status: str = "ok") -> Heartbeat:
    return Heartbeat(line, boot, last_seq, t, status)


def _feed(tracker: SeqTracker, events: list) -> list[tuple[str, int]]:
    """events: ("d", seq[, boot]) decisions, ("h", last_seq, now[, boot]) heartbeats, ("c", now) checks."""
    out = []
    for ev in events:
        if ev[0] == "d":
            notices = tracker.on_decision(make_decision(ev[1], boot_id=ev[2] if len(ev) > 2 else "A"))
        elif ev[0] == "h":
            notices = tracker.on_heartbeat(_hb(ev[1], ev[2], ev[3] if len(ev) > 3 else "A"), now=ev[2])
        elif ev[0] == "stop":  # the daemon's last heartbeat on a clean shutdown
            notices = tracker.on_heartbeat(_hb(ev[1], ev[2], status="stopping"), now=ev[2])
        else:
            notices = tracker.check(ev[1])
        out += [(n.kind, n.missing) for n in notices]
    return out


CASES = [
    ("in order", [("d", 1), ("d", 2), ("d", 3)], [], 0),
    ("gap", [("d", 1), ("d", 4)], [("gap", 2)], 2),
    ("duplicate", [("d", 1), ("d", 2), ("d", 2)], [("duplicate", 0)], 0),
    ("joined late, no heartbeat yet", [("d", 5), ("d", 6)], [("joined", 0)], 0),
    ("heartbeat first sets the start", [("h", 4, 0.0), ("d", 5), ("d", 6)], [], 0),
    ("heartbeat first, then a gap", [("h", 4, 0.0), ("d", 7)], [("gap", 2)], 2),
    ("heartbeat reveals a lost tail", [("d", 1), ("h", 3, 1.0)], [("gap", 2)], 2),
    ("heartbeat in step", [("d", 1), ("d", 2), ("h", 2, 1.0)], [], 0),
    ("boot change restarts seq", [("d", 1), ("d", 2), ("d", 1, "B"), ("d", 2, "B")], [("boot_change", 0)], 0),
    ("boot change mid-stream", [("d", 9), ("d", 3, "B")], [("joined", 0), ("boot_change", 0), ("gap", 2)], 2),
    ("heartbeat lost after 3 periods, then back",
     [("h", 0, 0.0), ("h", 0, 1.0), ("c", 3.9), ("c", 4.1), ("c", 9.0), ("h", 0, 9.5)],
     [("heartbeat_lost", 0), ("heartbeat_restored", 0)], 0),
    ("never heard anything", [("c", 2.0), ("c", 3.5), ("c", 9.0)], [("no_contact", 0)], 0),
    ("clean stop is not a loss", [("h", 0, 0.0), ("stop", 0, 1.0), ("c", 9.0)], [("daemon_stopped", 0)], 0),
]


@pytest.mark.parametrize("name, events, expected, missing", CASES, ids=[c[0] for c in CASES])
def test_tracker(name, events, expected, missing):
    tracker = SeqTracker(started_at=0.0)
    assert _feed(tracker, events) == expected
    assert tracker.stats.missing == missing
    assert tracker.stats.heartbeat_losses == sum(k == "heartbeat_lost" for k, _ in expected)


def test_heartbeat_period_is_learned_from_heartbeats():
    tracker = SeqTracker(started_at=0.0)
    assert _feed(tracker, [("h", 0, 0.0), ("h", 0, 0.1), ("c", 0.35), ("c", 0.45)]) == [("heartbeat_lost", 0)]


def test_explicit_timeout_wins():
    tracker = SeqTracker(heartbeat_timeout_s=10.0, started_at=0.0)
    assert _feed(tracker, [("h", 0, 0.0), ("h", 0, 0.1), ("c", 5.0)]) == []


def test_gap_notice_says_how_to_catch_up():
    tracker = SeqTracker()
    tracker.on_decision(make_decision(1, boot_id="A"))
    (gap,) = tracker.on_decision(make_decision(5, boot_id="A"))
    assert (gap.first_missing, gap.last_missing) == (2, 4)
    assert "ewaste-stream decisions --boot-id A --since-seq 1" in gap.message


def test_lines_are_tracked_separately():
    tracker = SeqTracker()
    notices = [n for d in (make_decision(1, line="a"), make_decision(1, line="b"), make_decision(2, line="a"))
               for n in tracker.on_decision(d)]
    assert notices == [] and tracker.stats.by_line == {"a": 2, "b": 1}
