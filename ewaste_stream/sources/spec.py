"""What a camera ``source:`` string means: a camera index, a device path, a URL or a file.

Pure parsing, no I/O, so the config schema can reject an unknown URL scheme at load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

SourceKind = Literal["index", "device", "url", "file"]
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    kind: SourceKind
    target: str  # what to hand to the capture backend (index as text, path or URL)
    raw: str

    @property
    def is_network(self) -> bool:
        return self.kind == "url"

    @property
    def index(self) -> int:
        if self.kind != "index":
            raise ValueError(f"source {self.raw!r} is not a camera index")
        return int(self.target)

    def redacted(self) -> str:
        """The source for logs and health: URL passwords replaced by ***."""
        if self.kind != "url":
            return self.raw
        parts = urlsplit(self.raw)
        if parts.password is None:
            return self.raw
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()


def parse_source(raw: str) -> SourceSpec:
    """``"0"`` -> camera index 0; ``/dev/video2`` -> V4L2 device; ``rtsp://...``/``http(s)://...``
    -> network stream; ``file://x.mp4`` or any other text -> a video file path.

    Raises ValueError (with the accepted forms) for an empty string or an unknown URL scheme."""
    s = str(raw).strip()
    if not s:
        raise ValueError("source is empty; use a camera index (0), /dev/videoN, rtsp://..., http(s)://... or a file path")
    if s.isdigit():
        return SourceSpec("index", str(int(s)), s)
    m = _SCHEME.match(s)
    if m:
        scheme = m.group(1).lower()
        if scheme == "file":
            return SourceSpec("file", s[len("file://"):], s)
        if scheme not in URL_SCHEMES:
            raise ValueError(f"unknown URL scheme {scheme!r} in source {s!r}; "
                             f"use one of {', '.join(x + '://' for x in URL_SCHEMES)}, file:// or a plain path")
        return SourceSpec("url", s, s)
    if re.fullmatch(r"/dev/video\d+", s):
        return SourceSpec("device", s, s)
    return SourceSpec("file", s, s)
