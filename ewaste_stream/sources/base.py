"""The contract between frame sources and the pipeline."""

from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

from ..messages import Frame


@runtime_checkable
class FrameSource(Protocol):
    """A camera or a file. ``frames()`` is a blocking iterator that ends at end of stream.

    Replay sources yield every frame in order (deterministic). Live sources run a capture
    thread into a bounded drop-oldest queue and yield the newest frames; their drops are
    counted and reported as ``StatusEvent``s, never silently lost.
    """

    camera: str
    fps: float

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...
