"""The detector thread (``ahead.AheadStage``, as ``app.DetectorStage`` in the live daemon): order, hand-over
without drops, a stale frame left to the camera queue, a failing frame skipped, the drain at shutdown, abort."""

from __future__ import annotations

import threading

import numpy as np

from ewaste_stream.app import DetectorStage
from ewaste_stream.messages import Frame
from ewaste_stream.sources import FrameMux, FrameQueue

IMG = np.zeros((4, 4, 3), np.uint8)


def _queues(n: int = 2, size: int = 32) -> list[FrameQueue]:
    cond = threading.Condition()
    return [FrameQueue(size, cond=cond) for _ in range(n)]


def _frame(cam: str, seq: int, t: float) -> Frame:
    return Frame(cam, seq, t, IMG)


def _token(frame: Frame) -> tuple[str, int]:
    return frame.camera, frame.seq


def test_frames_are_detected_on_one_other_thread_in_time_order_and_a_failing_one_is_skipped():
    a, b = _queues()
    for i in range(5):
        a.put(_frame("a", i, i / 10))
        b.put(_frame("b", i, i / 10 + 0.05))
    threads: set[str] = set()
    errors: list[tuple[str, int, str]] = []

    def analyse(frame: Frame) -> tuple[str, int]:
        threads.add(threading.current_thread().name)
        if _token(frame) == ("b", 1):
            raise ValueError("corrupt frame")
        return _token(frame)

    stage = DetectorStage(FrameMux([a, b]), analyse, lambda f, e: errors.append((*_token(f), str(e))), ahead=2)
    stage.start()
    got = [item for _ in range(9) if (item := stage.get(5.0)) is not None]
    got += list(stage.finish())
    assert [(f.camera, f.t) for f, _ in got] == sorted([(f.camera, f.t) for f, _ in got], key=lambda x: x[1])
    assert [an for _, an in got] == [_token(f) for f, _ in got]  # each frame with its own analysis
    assert len(got) == 9 and ("b", 1) not in [_token(f) for f, _ in got]
    assert errors == [("b", 1, "corrupt frame")]
    assert threads == {"detector"} and stage.processed == 9 and stage.failed is None


def test_a_slow_consumer_makes_the_detector_wait_not_drop():
    (q,) = _queues(1)
    for i in range(12):
        q.put(_frame("a", i, i / 60))
    stage = DetectorStage(FrameMux([q]), _token, lambda f, e: None, ahead=1).start()
    got = list(stage.finish())  # the consumer only starts now: the thread has been waiting on a full hand-over
    assert [_token(f) for f, _ in got] == [("a", i) for i in range(12)]
    assert q.dropped == 0


def test_the_detector_takes_a_frame_only_when_it_can_hand_it_over_so_capture_drops_the_stale_ones():
    q = FrameQueue(3)  # a live camera queue: drop-oldest
    for i in range(5):
        q.put(_frame("a", i, i / 60))  # frames 0 and 1 dropped
    stage = DetectorStage(FrameMux([q]), _token, lambda f, e: None, ahead=1).start()
    for _ in range(500):  # poll (bounded) until frame 2 is detected and waits for the pipeline
        if stage.processed:
            break
        stage._thread.join(0.01)
    assert stage.processed == 1 and len(q) == 2  # frames 3 and 4 stay with the camera
    for i in (5, 6):
        q.put(_frame("a", i, i / 60))  # the camera goes on: frame 3, the oldest, is dropped
    got = [an for _, an in stage.finish()]
    assert got == [("a", 2), ("a", 4), ("a", 5), ("a", 6)] and q.dropped == 3


def test_finish_takes_frames_queued_after_the_thread_found_the_queues_empty():
    (q,) = _queues(1)
    stage = DetectorStage(FrameMux([q]), _token, lambda f, e: None).start()
    assert stage.get(0.05) is None  # nothing yet; the thread is polling an empty mux
    for i in range(3):
        q.put(_frame("a", i, float(i)))
    assert [an for _, an in stage.finish()] == [("a", 0), ("a", 1), ("a", 2)]
    assert stage.get(0.0) is None  # ended


def test_without_an_analyse_frames_are_handed_over_as_they_are():
    (q,) = _queues(1)
    q.put(_frame("a", 0, 0.0))
    stage = DetectorStage(FrameMux([q]), None, lambda f, e: None).start()
    [(frame, an)] = list(stage.finish())
    assert _token(frame) == ("a", 0) and an is None


def test_abort_stops_the_thread_without_running_the_rest():
    (q,) = _queues(1)
    for i in range(20):
        q.put(_frame("a", i, float(i)))
    release = threading.Event()

    def analyse(frame: Frame) -> tuple[str, int]:
        release.wait(5.0)
        return _token(frame)

    stage = DetectorStage(FrameMux([q]), analyse, lambda f, e: None, ahead=1).start()
    release.set()
    stage.abort()
    assert not stage._thread.is_alive()
    assert stage.processed < 20 and len(q) > 0


def test_a_bug_in_the_stage_itself_is_reported_and_ends_it():
    (q,) = _queues(1)
    q.put(_frame("a", 0, 0.0))

    def bad_handler(frame: Frame, exc: Exception) -> None:
        raise RuntimeError("handler bug")

    def analyse(frame: Frame) -> None:
        raise ValueError("bad frame")

    stage = DetectorStage(FrameMux([q]), analyse, bad_handler).start()
    assert list(stage.finish()) == []
    assert isinstance(stage.failed, RuntimeError)
