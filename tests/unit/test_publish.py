"""Decision log (append, fsync policy, rotation, catch-up reads), sink fan-out, publisher queue."""

from __future__ import annotations

import json

import pytest

from ewaste_stream.clock import FakeClock
from ewaste_stream.decision_log import BootNotFound, JsonlDecisionLog, log_files, newest_boot, read_decisions
from ewaste_stream.messages import StatusKind
from ewaste_stream.protocol import decode_decision, encode_decision
from ewaste_stream.publish import DecisionPublisher, DecisionSinks, PublisherOptions
from ewaste_stream.testing import make_decision


def test_log_appends_wire_objects(tmp_path):
    log = JsonlDecisionLog(tmp_path / "d" / "decisions.jsonl", fsync="never")
    sent = [make_decision(i) for i in (1, 2, 3)]
    for d in sent:
        log(d)
    # readable before close: every line is flushed to the OS at once
    lines = (tmp_path / "d" / "decisions.jsonl").read_bytes().splitlines()
    assert [decode_decision(x) for x in lines] == sent
    log.close()
    assert log.stats()["written"] == 3 and log.last_seq == 3


@pytest.mark.parametrize("policy, advance, expected_fsyncs", [
    ("always", 0.0, 4),
    ("never", 10.0, 0),
    ("interval", 0.0, 0),  # the interval never passed
    ("interval", 0.6, 2),  # each second decision crosses the 1 s interval
])
def test_fsync_policy(tmp_path, policy, advance, expected_fsyncs):
    clock = FakeClock()
    log = JsonlDecisionLog(tmp_path / "d.jsonl", fsync=policy, fsync_interval_s=1.0, clock=clock.now)
    for i in range(1, 5):
        clock.advance(advance)
        log(make_decision(i))
    assert log.fsyncs == expected_fsyncs
    log.close()


def test_rotation_keeps_a_bounded_number_of_files(tmp_path):
    path = tmp_path / "d.jsonl"
    one = len(encode_decision(make_decision(99))) + 1  # the longest line here
    log = JsonlDecisionLog(path, fsync="never", max_bytes=3 * one + 10, keep=2)
    for i in range(1, 13):
        log(make_decision(i))
    log.close()
    files = log_files(path)
    assert [f.name for f in files] == ["d.jsonl.2", "d.jsonl.1", "d.jsonl"]
    seqs = [r["seq"] for r in read_decisions(path)]
    assert seqs == list(range(4, 13))  # the oldest file rotated away; order kept across files


@pytest.fixture
def two_boots(tmp_path):
    path = tmp_path / "d.jsonl"
    log = JsonlDecisionLog(path, fsync="never")
    for i in (1, 2, 3):
        log(make_decision(i, boot_id="A"))
    for i in (1, 2):
        log(make_decision(i, boot_id="B"))
    log.close()
    with open(path, "ab") as fh:
        fh.write(b'{"schema":1,"seq":3,"boot_id":"B","tor')  # torn last line (power cut)
    return path


@pytest.mark.parametrize("since, boot, expected, error", [
    (0, None, [("B", 1), ("B", 2)], None),  # newest boot by default
    (1, None, [("B", 2)], None),
    (1, "A", [("A", 2), ("A", 3), ("B", 1), ("B", 2)], None),  # rest of A, then all later boots
    (3, "A", [("B", 1), ("B", 2)], None),
    (0, "Z", [], BootNotFound),
])
def test_read_decisions_catch_up(two_boots, since, boot, expected, error):
    bad = []
    it = read_decisions(two_boots, since, boot, on_bad=lambda f, n, why: bad.append(n))
    if error:
        with pytest.raises(error):
            list(it)
        return
    assert [(r["boot_id"], r["seq"]) for r in it] == expected
    assert bad == [6]  # the torn line is reported, not returned
    assert newest_boot(two_boots) == "B"


def test_sinks_report_a_failing_sink_and_keep_going():
    events, got = [], []

    def broken(_d):
        raise OSError("disk full")

    sinks = DecisionSinks([("log", broken), ("pub", got.append)], events.append)
    sinks(make_decision(7))
    assert [d.seq for d in got] == [7] and sinks.errors == {"log": 1, "pub": 0}
    assert events[0].kind == StatusKind.SINK_ERROR and "disk full" in events[0].detail


def test_publisher_call_never_blocks_when_its_queue_is_full():
    events = []
    pub = DecisionPublisher("tcp://127.0.0.1:0", "line1", "A", PublisherOptions(queue_size=2), on_status=events.append)
    for i in range(1, 6):  # not started: nothing drains the queue
        pub(make_decision(i))
    assert pub.queue_depth == 2 and pub.stats.queue_full == 3
    assert [e.data["seq"] for e in events] == [3, 4, 5] and events[0].kind == StatusKind.SINK_ERROR


@pytest.mark.parametrize("argv, rc, expected", [
    (["--since-seq", "1"], 0, [("B", 2)]),
    (["--since-seq", "2", "--boot-id", "A"], 0, [("A", 3), ("B", 1), ("B", 2)]),
    (["--boot-id", "nope"], 1, []),
    (["--since-seq", "-1"], 2, []),
])
def test_decisions_command(two_boots, capsys, argv, rc, expected):
    from ewaste_stream.cli import main

    assert main(["decisions", "--log", str(two_boots), *argv]) == rc
    out = capsys.readouterr()
    rows = [json.loads(x) for x in out.out.splitlines()]
    assert [(r["boot_id"], r["seq"]) for r in rows] == expected
    if rc == 1:
        assert "not in" in out.err


@pytest.fixture(autouse=True)
def _restore_logging():
    """cli.main() points loguru at this test's captured stderr; point it back afterwards."""
    yield
    import sys

    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="INFO")


def test_decisions_piped_into_head_exits_cleanly(tmp_path):
    """`ewaste-stream decisions ... | head -1`: the reader goes away; exit 0, no traceback."""
    import subprocess
    import sys

    path = tmp_path / "d.jsonl"
    log = JsonlDecisionLog(path, fsync="never")
    for i in range(1, 3001):  # far more than a pipe buffer holds
        log(make_decision(i, boot_id="A"))
    log.close()
    proc = subprocess.Popen([sys.executable, "-m", "ewaste_stream", "decisions", "--log", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(proc.stdout.readline())["seq"] == 1
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
