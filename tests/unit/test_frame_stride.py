"""FrameStride: which frames of a camera run on a slow belt (tracker.min_step, max_skip_s)."""

from __future__ import annotations

import pytest

from ewaste_stream.pipeline import FrameStride

FPS = 60.0


def _run(stride: FrameStride, speeds, frames: int = 30) -> list[int]:
    """Frames 0..frames-1 at ``speeds(k)`` px a frame; the seqs that run (the detector then
    measures the belt's shift since the frame run before)."""
    ran, last, pos = [], None, 0.0
    for k in range(frames):
        pos += speeds(k) if k else 0.0
        if stride.skip(k, k / FPS):
            continue
        shift = None if last is None else (pos - last, 0.0)
        stride.ran(k, k / FPS, shift)
        ran.append(k)
        last = pos
    return ran


@pytest.mark.parametrize("speed, min_step, max_skip_s, every", [
    (36.0, 32.0, 0.04, 1),  # the tuned speed: every frame
    (18.0, 32.0, 0.04, 2),  # half of it: every other frame, 36 px a step
    (8.0, 32.0, 0.04, 3),  # 4 frames would make 32 px, but 50 ms is over max_skip_s: every third frame
    (8.0, 32.0, 0.1, 4),
    (0.0, 32.0, 0.04, 3),  # stopped: as rarely as max_skip_s allows
    (8.0, None, 0.04, 1),  # off
    (8.0, 32.0, 0.0, 1),  # no frame may be left out
])
def test_stride_follows_the_belt_speed(speed, min_step, max_skip_s, every):
    ran = _run(FrameStride(min_step, max_skip_s), lambda k: speed)
    assert ran[:2] == [0, 1]  # the first shift is measured between frames 0 and 1
    assert all(b - a == every for a, b in zip(ran[1:], ran[2:]))


def test_stride_adapts_when_the_belt_speeds_up_and_to_dropped_frames():
    st = FrameStride(32.0, 0.1)
    ran = _run(st, lambda k: 8.0 if k < 20 else 36.0, frames=40)
    assert ran[-5:] == [35, 36, 37, 38, 39]  # every frame once the belt runs at 36 px a frame
    st = FrameStride(32.0, 0.1)
    st.ran(10, 10 / FPS, None)
    st.ran(17, 17 / FPS, (56.0, 0.0))  # 7 frames after the last one run (a live queue dropped 6): 8 px a frame
    assert st.stride == 4 and st.skip(18, 18 / FPS) and not st.skip(21, 21 / FPS)
