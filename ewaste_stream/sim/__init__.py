"""Belt simulator: composites e-waste photos onto a moving conveyor belt.

- ``compose``: cut-out, belt texture, sprites, ``render_belt_crop`` (training crops that go
  through the same code as the video frames).
- ``make_belt_video(...)``: the video generator behind ``tools/make_belt_video.py``.
"""

from __future__ import annotations

from typing import Any

from .compose import belt_texture, cutout, render_belt_crop
from .effects import Realism

__all__ = ["Realism", "belt_texture", "cutout", "make_belt_video", "render_belt_crop"]


def __getattr__(name: str) -> Any:  # the video module is imported on first use
    if name == "make_belt_video":
        from .video import make_belt_video

        return make_belt_video
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
