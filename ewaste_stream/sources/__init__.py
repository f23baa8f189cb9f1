"""Frame sources: camera index, V4L2 device, RTSP/HTTP URL, video file.

- ``parse_source(text)`` -> ``SourceSpec`` (what a ``source:`` string means; pure).
- ``FileSource(path)``: replay, every frame, ``t = index / fps`` (deterministic).
- ``LiveSource``: live capture thread -> bounded drop-oldest queue, reconnect with back-off,
  frozen-stream watchdog. ``open_live_source(camera_config, ctx)`` builds one from config.
- ``FrameMux``: one consumer over all cameras' queues, earliest frame first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .file import FileSource
from .live import LivePolicy, LiveSource, SourceContext
from .opencv import SourceOpenError, open_reader
from .queue import LIVE_ANALYSIS_AHEAD, FrameMux, FrameQueue
from .spec import SourceSpec, parse_source

if TYPE_CHECKING:
    from ..config import CameraSection

__all__ = [
    "LIVE_ANALYSIS_AHEAD", "FileSource", "FrameMux", "FrameQueue", "LivePolicy", "LiveSource", "SourceContext",
    "SourceOpenError", "SourceSpec", "open_live_source", "open_reader", "parse_source",
]


def live_policy(cam: "CameraSection", loop: bool | None = None) -> LivePolicy:
    return LivePolicy(queue_size=cam.queue_size, frozen_after_s=cam.frozen_after_s,
                      reconnect_min_s=cam.reconnect_min_s, reconnect_max_s=cam.reconnect_max_s,
                      loop=cam.loop if loop is None else loop, fps=cam.fps)


def open_live_source(cam: "CameraSection", ctx: SourceContext, loop: bool | None = None,
                     open_fn=open_reader) -> LiveSource:  # noqa: ANN001
    """A ``LiveSource`` for one ``cameras:`` entry (not started yet)."""
    return LiveSource(cam.id, parse_source(cam.source), live_policy(cam, loop), ctx, open_fn)
