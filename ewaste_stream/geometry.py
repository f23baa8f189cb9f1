"""Image <-> belt coordinates for one camera, and the calibration helpers that make them.

Belt coordinates are pixels of a shared *reference* camera plane: with no calibration every
camera maps with the identity, so frame-synchronous cameras looking at the same belt agree
out of the box. The tracker works on the **along-belt coordinate** ``u`` (grows in the
direction of travel) and the cross-belt coordinate ``v``; ``BeltMap`` hides the flip for a
belt moving right to left.

Two ways to calibrate (config ``cameras[].mapping``):

- ``offset`` + ``scale``: ``belt = (image - offset) * scale`` (cameras side by side along
  the belt, same height and zoom);
- ``homography``: a 3x3 matrix image -> belt, e.g. from :func:`homography_from_marks` on a
  frame with known marks, or :func:`mapping_from_meta` on a simulator ``.meta.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .config import BeltMapping

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config
from .messages import BBox

LEFT_TO_RIGHT = "left_to_right"


@dataclass(frozen=True)
class BeltMap:
    """Maps one camera's image pixels to belt coordinates (u along travel, v across)."""

    matrix: np.ndarray  # 3x3 image -> belt (before the direction flip)
    direction: str = LEFT_TO_RIGHT

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, dtype=np.float64)
        if m.shape != (3, 3) or not np.all(np.isfinite(m)) or abs(np.linalg.det(m)) < 1e-12:
            raise ValueError(f"BeltMap: the mapping must be an invertible 3x3 matrix, got {m.tolist()}")
        object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "_inverse", np.linalg.inv(m))
        object.__setattr__(self, "_sign", 1.0 if self.direction == LEFT_TO_RIGHT else -1.0)
        object.__setattr__(self, "_m", tuple(float(v) for v in m.ravel()))  # plain floats: one point at a time

    @classmethod
    def identity(cls, direction: str = LEFT_TO_RIGHT) -> "BeltMap":
        return cls(np.eye(3), direction)

    @classmethod
    def from_config(cls, mapping: BeltMapping, direction: str = LEFT_TO_RIGHT) -> "BeltMap":
        if mapping.homography is not None:
            return cls(np.asarray(mapping.homography, dtype=np.float64), direction)
        (ox, oy), (sx, sy) = mapping.offset, mapping.scale
        return cls(np.array([[sx, 0.0, -ox * sx], [0.0, sy, -oy * sy], [0.0, 0.0, 1.0]]), direction)

    @property
    def is_affine(self) -> bool:
        return bool(np.allclose(self.matrix[2], (0.0, 0.0, 1.0)))

    def to_belt(self, pts: np.ndarray) -> np.ndarray:
        """Image points [N, 2] (x, y) -> belt points [N, 2] (u, v)."""
        out = _apply(self.matrix, pts)
        out[:, 0] *= self._sign  # type: ignore[attr-defined]
        return out

    def to_image(self, pts: np.ndarray) -> np.ndarray:
        """Belt points [N, 2] (u, v) -> image points [N, 2] (x, y)."""
        p = np.array(pts, dtype=np.float64).reshape(-1, 2)
        p[:, 0] *= self._sign  # type: ignore[attr-defined]
        return _apply(self._inverse, p)  # type: ignore[attr-defined]

    def point_to_belt(self, x: float, y: float) -> tuple[float, float]:
        """One image point -> (u, v): :meth:`to_belt` without arrays (the tracker's hot path)."""
        a, b, c, d, e, f, g, h, i = self._m  # type: ignore[attr-defined]
        u, v = a * x + b * y + c, d * x + e * y + f
        if g != 0.0 or h != 0.0 or i != 1.0:  # projective
            w = g * x + h * y + i
            u, v = u / w, v / w
        return self._sign * u, v  # type: ignore[attr-defined]

    def box_to_belt(self, bbox: BBox) -> tuple[float, float, float, float]:
        """Axis-aligned belt box (u0, v0, u1, v1) around an image box."""
        x0, y0, x1, y1 = bbox
        corners = [self.point_to_belt(x, y) for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
        us, vs = [p[0] for p in corners], [p[1] for p in corners]
        return float(min(us)), float(min(vs)), float(max(us)), float(max(vs))

    def box_to_image(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        u0, v0, u1, v1 = box
        corners = self.to_image(np.array([[u0, v0], [u1, v0], [u0, v1], [u1, v1]], dtype=np.float64))
        x0, y0 = corners.min(axis=0)
        x1, y1 = corners.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    def image_shift_to_belt(self, dx: float, dy: float, at: tuple[float, float]) -> tuple[float, float]:
        """An image displacement measured near point ``at`` -> belt displacement (du, dv)."""
        p = np.array([at, (at[0] + dx, at[1] + dy)], dtype=np.float64)
        b = self.to_belt(p)
        return float(b[1, 0] - b[0, 0]), float(b[1, 1] - b[0, 1])

    def view_extent(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The part of the belt this camera sees, as a belt box (u0, v0, u1, v1)."""
        return self.box_to_belt((0.0, 0.0, float(width), float(height)))


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    out = p @ m[:2, :2].T + m[:2, 2]
    if m[2, 0] != 0.0 or m[2, 1] != 0.0 or m[2, 2] != 1.0:  # projective
        w = p @ m[2, :2] + m[2, 2]
        out = (p @ m[:2, :2].T + m[:2, 2]) / w[:, None]
    return out


def homography_from_marks(image_pts: Sequence[Sequence[float]], belt_pts: Sequence[Sequence[float]]) -> list[list[float]]:
    """Calibrate from >= 4 marks seen in a frame (image px) whose belt positions are known.

    Returns the 3x3 homography (image -> belt) for ``cameras[].mapping.homography``.
    With fewer than 4 marks, or marks on one line, raises ``ValueError`` saying so.
    """
    src = np.asarray(image_pts, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(belt_pts, dtype=np.float64).reshape(-1, 2)
    if len(src) != len(dst) or len(src) < 4:
        raise ValueError(f"calibration needs at least 4 marks with known belt positions, got {len(src)}/{len(dst)}")
    rows = []
    for (x, y), (u, v) in zip(src, dst):  # direct linear transform
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    a = np.asarray(rows)
    _, s, vt = np.linalg.svd(a)
    if s[-2] < 1e-9 * s[0]:
        raise ValueError("calibration marks are degenerate (collinear or repeated); use 4 marks spread over the belt")
    h = vt[-1].reshape(3, 3)
    h = h / h[2, 2]
    return [[float(v) for v in row] for row in h]


def mapping_from_meta(meta: Mapping[str, Any] | str | Path, camera_index: int) -> BeltMapping:
    """A camera's mapping from a simulator ``PREFIX.meta.json``.

    Reads ``cameras[i].image_to_belt`` (a 3x3 homography), or ``homography`` /
    ``offset`` + ``scale`` entries; a camera the file does not describe maps with the
    identity (the simulator's camera 0 is the belt plane itself)."""
    if not isinstance(meta, Mapping):
        meta = json.loads(Path(meta).read_text())
    entries = meta.get("cameras") or []
    if isinstance(entries, Mapping):
        entries = list(entries.values())
    if camera_index >= len(entries) or not isinstance(entries[camera_index], Mapping):
        return BeltMapping()
    entry = entries[camera_index]
    if isinstance(entry.get("mapping"), Mapping):
        entry = entry["mapping"]
    if entry.get("image_to_belt") is not None:
        h = np.asarray(entry["image_to_belt"], dtype=np.float64)
        return BeltMapping(homography=(h / h[2, 2]).tolist())
    fields = {k: entry[k] for k in ("homography", "offset", "scale") if entry.get(k) is not None}
    return BeltMapping.model_validate(fields)


def cameras_from_meta(meta: Mapping[str, Any] | str | Path, config: "Config") -> "Config":
    """``config`` with each camera's mapping taken from a simulator meta file (camera i = file i)."""
    if not isinstance(meta, Mapping):
        meta = json.loads(Path(meta).read_text())
    n = max(len(config.cameras), len(meta.get("cameras") or []))
    from .replay import camera_config

    config = camera_config(config, n)
    cams = [c.model_copy(update={"mapping": mapping_from_meta(meta, i)}) for i, c in enumerate(config.cameras)]
    return config.model_copy(update={"cameras": cams})


def box_overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Share of box a (x0, y0, x1, y1) inside box b."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    area = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    return 0.0 if w <= 0 or h <= 0 else w * h / max(area, 1e-9)


def point_in_box(p: Sequence[float], box: Sequence[float]) -> bool:
    return box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]
