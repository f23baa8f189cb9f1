"""Typed, frozen messages that flow between pipeline stages.

Every message checks itself in ``__post_init__`` so a bad value fails where it is made,
not three stages later. Time is always *stream seconds* (replay: ``frame_index / fps``;
live: seconds since start from a monotonic clock), never ``time.time()``.

Image convention: ``Frame.image`` is **BGR** uint8 (as OpenCV delivers it). Crops handed to
a classifier are **RGB** uint8 (see ``ewaste_stream.model.base.Classifier``).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

BBox = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, x1 > x0, y1 > y0


def _check_bbox(bbox: BBox, what: str) -> None:
    if len(bbox) != 4:
        raise ValueError(f"{what}: bbox must have 4 numbers, got {bbox!r}")
    x0, y0, x1, y1 = bbox
    if not all(math.isfinite(v) for v in bbox):
        raise ValueError(f"{what}: bbox has a non-finite value {bbox!r}")
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"{what}: bbox must have x1 > x0 and y1 > y0, got {bbox!r}")


def _check_time(t: float, what: str) -> None:
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"{what}: timestamp must be finite and >= 0, got {t!r}")


@dataclass(frozen=True, slots=True)
class Frame:
    """One image from one camera."""

    camera: str
    seq: int  # per-camera frame counter, starts at 0
    t: float  # stream seconds
    image: np.ndarray = field(repr=False, compare=False)  # H x W x 3 uint8, BGR
    belt_position: float | None = None  # encoder reading (belt units), if an encoder is wired

    def __post_init__(self) -> None:
        if not self.camera:
            raise ValueError("Frame: camera id must be a non-empty string")
        if self.seq < 0:
            raise ValueError(f"Frame: seq must be >= 0, got {self.seq}")
        _check_time(self.t, "Frame")
        img = self.image
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            desc = getattr(img, "shape", type(img).__name__), getattr(img, "dtype", "")
            raise ValueError(f"Frame: image must be an HxWx3 uint8 array, got {desc}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True, slots=True)
class Detection:
    """An item found in one frame of one camera."""

    camera: str
    frame_seq: int
    t: float
    bbox: BBox
    centroid: tuple[float, float]
    area: float  # pixels of the item's mask

    def __post_init__(self) -> None:
        _check_time(self.t, "Detection")
        _check_bbox(self.bbox, "Detection")
        if self.area <= 0:
            raise ValueError(f"Detection: area must be > 0, got {self.area}")


@dataclass(frozen=True, slots=True)
class Observation:
    """The classifier's verdict on one view (crop) of one tracked item."""

    track_id: int
    camera: str
    t: float
    probs: np.ndarray = field(repr=False, compare=False)  # float32[C], calibrated, sums to 1
    quality: float = 1.0  # view quality weight in (0, 1]

    def __post_init__(self) -> None:
        _check_time(self.t, "Observation")
        p = self.probs
        if not isinstance(p, np.ndarray) or p.ndim != 1 or p.size < 2:
            raise ValueError("Observation: probs must be a 1-D array with at least 2 classes")
        if not np.all(np.isfinite(p)) or np.any(p < 0) or abs(float(p.sum()) - 1.0) > 1e-3:
            raise ValueError(f"Observation: probs must be finite, >= 0 and sum to 1 (sum={float(p.sum()):.4f})")
        if not (0.0 < self.quality <= 1.0):
            raise ValueError(f"Observation: quality must be in (0, 1], got {self.quality}")


class RejectReason(str, enum.Enum):
    LOW_CONFIDENCE = "low_confidence"
    LOW_MARGIN = "low_margin"
    TOO_FEW_VIEWS = "too_few_views"
    LOST_TRACK = "lost_track"
    LATE = "late"


REJECT_LABEL = "reject"


@dataclass(frozen=True, slots=True)
class TrackSnapshot:
    """What the tracker knows about an item at the moment it is decided."""

    track_id: int
    t_first: float
    t_cross: float  # stream seconds when the centroid crossed the decision line (or was lost)
    bbox: BBox  # at the crossing
    y: float  # cross-belt position of the centroid, 0..1 of belt width
    lost: bool = False  # decided because the track was lost before the line

    def __post_init__(self) -> None:
        _check_time(self.t_first, "TrackSnapshot")
        _check_time(self.t_cross, "TrackSnapshot")
        _check_bbox(self.bbox, "TrackSnapshot")
        if self.t_cross < self.t_first:
            raise ValueError("TrackSnapshot: t_cross must be >= t_first")


@dataclass(frozen=True, slots=True)
class Decision:
    """Exactly one per item. Serialised by ``ewaste_stream.protocol`` (wire schema 1)."""

    line: str
    boot_id: str
    seq: int  # 1, 2, 3 ... per boot
    item_id: int
    label: str  # class name or "reject"
    top_label: str
    class_index: int  # index of top_label in the model's classes; -1 when label == "reject"
    confidence: float
    margin: float
    reject_reason: RejectReason | None
    probs: Mapping[str, float]
    views: int
    views_by_camera: Mapping[str, int]
    t_first: float
    t_cross: float
    t_decided: float
    y: float
    bbox: BBox
    deadline: float | None
    lane: str | None
    actuator: str | None
    model: Mapping[str, str]  # {"name", "sha256"}
    config_sha: str
    wall_decided: float | None = None  # live only: wall clock (UNIX seconds) when decided

    def __post_init__(self) -> None:
        if self.seq < 1:
            raise ValueError(f"Decision: seq starts at 1, got {self.seq}")
        if (self.label == REJECT_LABEL) != (self.reject_reason is not None):
            raise ValueError("Decision: label 'reject' and reject_reason go together")
        if self.label == REJECT_LABEL and self.class_index != -1:
            raise ValueError("Decision: class_index must be -1 for a reject")
        if self.label != REJECT_LABEL and (self.class_index < 0 or self.label != self.top_label):
            raise ValueError("Decision: an accepted label must be the top label with its class index")
        for name in ("confidence", "margin"):
            v = getattr(self, name)
            if not (0.0 <= v <= 1.0):
                raise ValueError(f"Decision: {name} must be in [0, 1], got {v}")
        if self.views < 0 or sum(self.views_by_camera.values()) != self.views:
            raise ValueError("Decision: views must equal the sum of views_by_camera")
        for t in (self.t_first, self.t_cross, self.t_decided):
            _check_time(t, "Decision")
        _check_bbox(self.bbox, "Decision")

    @property
    def rejected(self) -> bool:
        return self.label == REJECT_LABEL


class StatusKind(str, enum.Enum):
    SOURCE_LOST = "source_lost"
    SOURCE_RECOVERED = "source_recovered"
    FRAME_DROPPED = "frame_dropped"
    STAGE_ERROR = "stage_error"
    QUEUE_HIGH_WATER = "queue_high_water"
    SINK_ERROR = "sink_error"
    LIGHT_CHANGED = "light_changed"  # a camera's belt got brighter/darker at once; its belt model was rescaled


@dataclass(frozen=True, slots=True)
class StatusEvent:
    kind: StatusKind
    source: str  # camera id, stage or sink name
    t: float
    detail: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, StatusKind):
            raise ValueError(f"StatusEvent: kind must be a StatusKind, got {self.kind!r}")
        _check_time(self.t, "StatusEvent")
