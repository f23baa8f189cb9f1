"""annotate.FrameGrabber: a picture drawn on the pipeline's thread for a thread that asks."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ewaste_stream.annotate import FrameGrabber
from ewaste_stream.messages import Frame


def _frame(camera: str, seq: int) -> Frame:
    return Frame(camera=camera, seq=seq, t=seq / 30, image=np.zeros((4, 6, 3), np.uint8))


def test_a_request_gets_the_next_frame_of_its_camera_drawn_on_the_serving_thread():
    drawn: list[tuple[str, int, str]] = []

    def render(f: Frame) -> bytes:
        drawn.append((f.camera, f.seq, threading.current_thread().name))
        return f"{f.camera}:{f.seq}".encode()

    grab = FrameGrabber(["cam0", "cam1"], render)
    grab.serve(_frame("cam0", 1))  # nobody asked: nothing drawn
    assert drawn == []
    got: dict[str, bytes | None] = {}
    askers = [threading.Thread(target=lambda k=k: got.__setitem__(k, grab.request("cam1", 10.0))) for k in "ab"]
    for t in askers:
        t.start()
    while sum(len(v) for v in grab._wanted.values()) < 2:  # both are waiting
        threading.Event().wait(0.001)
    grab.serve(_frame("cam0", 2))  # another camera's frame does not answer them
    grab.serve(_frame("cam1", 3))
    for t in askers:
        t.join(10)
    assert got == {"a": b"cam1:3", "b": b"cam1:3"}
    assert drawn == [("cam1", 3, threading.current_thread().name)]  # drawn once, here
    assert grab._wanted == {}


def test_no_frame_in_time_gives_none_and_forgets_the_request():
    grab = FrameGrabber(["cam0"], lambda f: b"x")
    assert grab.request("cam0", 0.01) is None
    assert grab._wanted == {"cam0": []}
    with pytest.raises(KeyError):
        grab.request("cam9", 0.01)


def test_a_picture_that_fails_to_draw_answers_none_and_the_line_goes_on():
    def render(f: Frame) -> bytes:
        raise ValueError("broken overlay")

    grab = FrameGrabber(["cam0"], render)
    out: list[bytes | None] = []
    t = threading.Thread(target=lambda: out.append(grab.request("cam0", 10.0)))
    t.start()
    while not grab._wanted:
        threading.Event().wait(0.001)
    grab.serve(_frame("cam0", 1))  # does not raise
    t.join(10)
    assert out == [None]
