"""Sources: spec parsing, drop-oldest queues, the live capture thread (fake reader + fake clock)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ewaste_stream.clock import FakeClock, StreamClock
from ewaste_stream.messages import Frame, StatusKind
from ewaste_stream.sources import (FrameMux, FrameQueue, LivePolicy, LiveSource, SourceContext, SourceOpenError,
                                   parse_source)


@pytest.mark.parametrize("raw, kind, target, error", [
    ("0", "index", "0", None),
    ("02", "index", "2", None),
    ("/dev/video2", "device", "/dev/video2", None),
    ("rtsp://user:pw@10.0.0.2:554/s", "url", "rtsp://user:pw@10.0.0.2:554/s", None),
    ("HTTP://cam/mjpg", "url", "HTTP://cam/mjpg", None),
    ("file:///tmp/belt.mp4", "file", "/tmp/belt.mp4", None),
    ("samples/belt.cam0.mp4", "file", "samples/belt.cam0.mp4", None),
    ("rtps://10.0.0.2/s", None, None, "unknown URL scheme 'rtps'"),
    ("  ", None, None, "source is empty"),
])
def test_parse_source(raw, kind, target, error):
    if error:
        with pytest.raises(ValueError, match=error):
            parse_source(raw)
        return
    spec = parse_source(raw)
    assert (spec.kind, spec.target) == (kind, target)


def test_redacted_hides_url_password():
    assert parse_source("rtsp://admin:s3cret@cam/1").redacted() == "rtsp://admin:***@cam/1"
    assert parse_source("rtsp://cam/1").redacted() == "rtsp://cam/1"


def _frame(cam: str, seq: int, t: float) -> Frame:
    return Frame(cam, seq, t, np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize("policy, kept, dropped_seq", [
    ("drop_oldest", [1, 2], [0]),
    ("drop_newest", [0, 1], [2]),
])
def test_frame_queue_policies(policy, kept, dropped_seq):
    q = FrameQueue(2, policy)
    out = [q.put(_frame("c", i, i)) for i in range(3)]
    assert [f.seq for f in out if f is not None] == dropped_seq
    assert q.dropped == 1 and q.high_water == 2
    assert [q.get_nowait().seq, q.get_nowait().seq] == kept
    assert q.get_nowait() is None


def test_frame_queue_rejects_bad_size():
    with pytest.raises(ValueError, match="maxsize"):
        FrameQueue(0)


def test_mux_returns_earliest_frame_across_cameras():
    cond = threading.Condition()
    a, b = FrameQueue(4, cond=cond), FrameQueue(4, cond=cond)
    for t in (0.0, 0.2):
        a.put(_frame("a", int(t * 10), t))
    b.put(_frame("b", 0, 0.1))
    mux = FrameMux([a, b])
    assert [(f.camera, f.t) for f in (mux.get(0.0) for _ in range(3))] == [("a", 0.0), ("b", 0.1), ("a", 0.2)]
    assert mux.get(0.0) is None


@pytest.mark.parametrize("attempt, delay", [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (99, 30.0)])
def test_backoff_is_exponential_and_bounded(attempt, delay):
    assert LivePolicy(reconnect_min_s=0.5, reconnect_max_s=30.0).backoff(attempt) == delay


# ---- live capture with a scripted fake backend -------------------------------------------

class FakeReader:
    """``n`` frames then end of stream; ``block`` makes read() hang (a frozen stream)."""

    def __init__(self, n: int, block: threading.Event | None = None) -> None:
        self.n, self.block, self.fps, self.released = n, block, 10.0, False

    def read(self):
        if self.block is not None:
            self.block.wait(5)
            return None
        if self.n <= 0:
            return None
        self.n -= 1
        return np.zeros((8, 8, 3), np.uint8)

    def release(self) -> None:
        self.released = True


class Script:
    """open_fn that follows a script: a FakeReader to hand out, or "fail"."""

    def __init__(self, *steps) -> None:
        self.steps, self.opened = list(steps), 0

    def __call__(self, spec, camera):
        self.opened += 1
        if not self.steps:  # script exhausted: keep failing, slowly (the fake clock does not wait)
            threading.Event().wait(0.05)
        step = self.steps.pop(0) if self.steps else "fail"
        if step == "fail":
            raise SourceOpenError(camera, spec.raw, "scripted failure")
        return step


def _live(script: Script, source: str = "rtsp://cam/1", **policy) -> tuple[LiveSource, list, FakeClock]:
    clock = FakeClock()
    events: list = []
    ctx = SourceContext(StreamClock(clock), events.append)
    return LiveSource("cam0", parse_source(source), LivePolicy(**policy), ctx, script), events, clock


def _collect(src: LiveSource, n: int, limit: int = 200) -> list[Frame]:
    out = []
    it = src.frames()
    for _ in range(limit):
        out.append(next(it))
        if len(out) >= n:
            break
    return out


def test_start_fails_with_camera_and_source_named():
    src, _, _ = _live(Script("fail"))
    with pytest.raises(SourceOpenError, match="camera 'cam0': cannot open source 'rtsp://cam/1'"):
        src.start(require_open=True)


def test_lost_stream_reconnects_with_backoff_and_continues():
    script = Script(FakeReader(3), "fail", "fail", "fail", FakeReader(3))
    src, events, clock = _live(script, queue_size=64, reconnect_min_s=0.5, reconnect_max_s=30.0)
    src.start()
    frames = _collect(src, 6)
    src.close()
    assert [f.seq for f in frames] == list(range(6))  # seq continues across the reconnect
    assert [e.kind for e in events[:2]] == [StatusKind.SOURCE_LOST, StatusKind.SOURCE_RECOVERED]
    assert events[1].data["down_s"] == pytest.approx(3.5)  # 0.5 + 1 + 2 s of back-off (fake clock)
    assert clock.waits[:3] == [0.5, 1.0, 2.0]  # first retry at once, then back-off doubling
    assert src.reconnects >= 1 and src.reconnect_attempts >= 3
    assert all(b.t >= a.t for a, b in zip(frames, frames[1:]))


def test_drops_are_counted_and_emitted():
    src, events, _ = _live(Script(FakeReader(10)), source="rtsp://cam/1", queue_size=2)
    src.start()
    while src.frames_captured < 10:  # nobody consumes: the capture thread must not wait
        threading.Event().wait(0.005)
    drops = [e for e in events if e.kind == StatusKind.FRAME_DROPPED]
    assert src.queue.dropped == 8 == len(drops)
    assert [d.data["seq"] for d in drops] == list(range(8))  # oldest first
    src.close()
    assert src.info()["dropped"] == 8


def test_frozen_stream_counts_as_lost_and_reconnects():
    hang = threading.Event()
    script = Script(FakeReader(0, block=hang), FakeReader(2))
    src, events, clock = _live(script, frozen_after_s=5.0, queue_size=8)
    src.start()
    src.check()
    assert src.state == "running"  # not frozen yet
    clock.advance(6.0)
    src.check()
    assert events[0].kind == StatusKind.SOURCE_LOST and "frozen" in events[0].detail
    frames = _collect(src, 2)
    assert len(frames) == 2 and script.opened >= 2  # frames from the reconnected reader
    hang.set()  # the stuck reader returns; its thread notices it was superseded and exits
    src.close()
    assert src.reconnects == 1


def test_file_source_loops_and_non_loop_file_ends(tmp_path):
    script = Script(FakeReader(2), FakeReader(2), FakeReader(2))
    src, events, clock = _live(script, source=str(tmp_path / "x.mp4"), loop=True, queue_size=64, fps=10.0)
    src.start()
    frames = _collect(src, 5)
    src.close()
    assert [f.seq for f in frames] == [0, 1, 2, 3, 4] and not events  # looping is not a loss
    assert frames[1].t - frames[0].t == pytest.approx(0.1)  # paced at fps on the injected clock

    src, events, _ = _live(Script(FakeReader(2)), source=str(tmp_path / "x.mp4"), loop=False)
    src.start()
    assert [f.seq for f in src.frames()] == [0, 1]  # iterator ends at end of file
    assert src.state == "ended" and not events
