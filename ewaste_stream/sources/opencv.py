"""OpenCV capture backends: camera index, V4L2 device, RTSP/HTTP URL, video file.

A ``Reader`` is one open connection: ``read()`` returns the next BGR image or None (end of
file, lost stream, read timeout). ``open_reader`` raises ``SourceOpenError`` with the camera
id and the (password-redacted) source so the daemon can say exactly what failed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .spec import SourceSpec

OPEN_TIMEOUT_MS = 5000  # network streams: give up opening after this long
READ_TIMEOUT_MS = 5000  # network streams: a read that blocks this long counts as lost


class SourceOpenError(RuntimeError):
    """A source that could not be opened; the message names the camera and the source."""

    def __init__(self, camera: str, source: str, reason: str) -> None:
        super().__init__(f"camera {camera!r}: cannot open source {source!r}: {reason}")
        self.camera = camera
        self.source = source
        self.reason = reason


class Reader(Protocol):
    fps: float | None  # as reported by the backend; None when unknown

    def read(self) -> np.ndarray | None: ...

    def release(self) -> None: ...


class OpenCVReader:
    """``cv2.VideoCapture`` behind the ``Reader`` interface."""

    def __init__(self, cap) -> None:  # noqa: ANN001 (cv2.VideoCapture)
        import cv2

        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else None
        frames = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        self.frame_count = int(frames) if frames > 0 else None

    def read(self) -> np.ndarray | None:
        ok, img = self._cap.read()
        if not ok or img is None:
            return None
        if img.ndim == 2:  # some cameras deliver grey
            img = np.repeat(img[:, :, None], 3, axis=2)
        return np.ascontiguousarray(img[:, :, :3], dtype=np.uint8)

    def release(self) -> None:
        self._cap.release()


def _file_reason(path: str) -> str | None:
    p = Path(path)
    if not p.exists():
        return f"no such file ({p.resolve()}); check the path or use a camera index / URL"
    if p.is_dir():
        return "it is a folder; give a video file"
    if not os.access(p, os.R_OK):
        return "the file is not readable (permissions)"
    return None


def open_reader(spec: SourceSpec, camera: str) -> OpenCVReader:
    """Open one connection to ``spec``; raises ``SourceOpenError`` when it cannot."""
    import cv2

    if spec.kind == "file" and (why := _file_reason(spec.target)):
        raise SourceOpenError(camera, spec.redacted(), why)
    if spec.kind == "device" and not Path(spec.target).exists():
        raise SourceOpenError(camera, spec.raw, "no such video device; check `ls /dev/video*`")
    if spec.kind == "index":
        cap = cv2.VideoCapture(spec.index)
    elif spec.kind == "device":
        cap = cv2.VideoCapture(spec.target, cv2.CAP_V4L2)
    elif spec.kind == "url":
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
        cap = cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, params)
    else:
        cap = cv2.VideoCapture(spec.target)
    if not cap.isOpened():
        cap.release()
        hints = {
            "index": "no camera at this index (is it plugged in? `ls /dev/video*`)",
            "device": "the device exists but could not be opened (in use, or permissions: group 'video')",
            "url": "the stream did not answer (host, port, path, credentials?)",
            "file": "OpenCV cannot decode this file (not a video, or an unsupported codec)",
        }
        raise SourceOpenError(camera, spec.redacted(), hints[spec.kind])
    if spec.kind in ("index", "device"):
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame; ignored by some drivers
    return OpenCVReader(cap)
