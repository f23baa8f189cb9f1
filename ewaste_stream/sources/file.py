"""Replay source: every frame of a video file, in order, timestamped ``index / fps``.

Deterministic (nothing is dropped, no clock involved), so the same video and model give the
same decisions. The live daemon plays files through ``LiveSource`` instead (paced, looping,
drop-oldest like a camera).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..messages import Frame
from .opencv import SourceOpenError, open_reader
from .spec import parse_source

DEFAULT_FPS = 25.0


class FileSource:
    """``FrameSource`` over a video file for replay. ``fps`` overrides the file's own rate."""

    def __init__(self, path: str | Path, camera: str = "cam0", fps: float | None = None) -> None:
        self.camera = camera
        self.path = Path(path)
        spec = parse_source(str(path))
        if spec.kind != "file":
            raise SourceOpenError(camera, str(path), "replay needs a video file, not a camera or stream")
        self._reader = open_reader(spec, camera)
        self.fps = float(fps or self._reader.fps or DEFAULT_FPS)
        self.frame_count = self._reader.frame_count

    def frames(self) -> Iterator[Frame]:
        i = 0
        try:
            while (img := self._reader.read()) is not None:
                yield Frame(self.camera, i, i / self.fps, img)
                i += 1
        finally:
            self.close()

    def close(self) -> None:
        self._reader.release()
