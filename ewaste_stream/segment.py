"""Track-guided segmentation: split the detector's item mask into one piece per item.

On a crowded belt two items can lie a few px apart (they merge into one region of the
downscaled mask), and an item with dark parts can fall apart into fragments. The tracker
knows where every item it follows must be now (its footprint, moved with the belt), so
the mask is cut along those footprints instead of along connected regions:

1. every item pixel inside a footprint belongs to that track;
2. footprints grow into the item pixels around them by at most ``slack`` px (detection
   jitter, parts that were dark a moment ago), never further;
3. a track still entering the picture also owns the strip between the picture's upstream
   edge and its footprint (the part of the item that has just come into view);
4. item pixels left over form new pieces (a new item, or a neighbour that arrived merged
   with one already tracked) when they are at least ``min_new_px`` large. A new piece that
   still touches the picture's upstream edge is flagged ``entering``: it is only part of
   an item (which may show as several fragments until it is all in view), so the tracker
   waits for it to come in completely before following it.

Pieces that hold several items are cut apart in :mod:`split`; pieces that are one item are
joined in :mod:`join`. All coordinates are px of the detector's downscaled image.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .track import CameraView

_K3 = np.ones((3, 3), np.uint8)
EMPTY = np.uint8(255)  # footprint age of a pixel the item does not cover


@dataclass(frozen=True, slots=True)
class Prior:
    """Where a tracked item should be in this frame."""

    key: int  # track id
    x0: int  # top-left of ``mask`` in the frame (may be outside it)
    y0: int
    mask: np.ndarray  # uint8, 1 = the item's predicted footprint
    entering: int = 0  # still coming in over the picture's left (+1) or right (-1) edge; 0: no
    claim_only: bool = False  # its pixels are claimed, but no piece is cut for it


@dataclass(frozen=True, slots=True)
class Piece:
    """The item pixels of one item in this frame."""

    key: int | None  # the prior's key; None for a new item
    x0: int
    y0: int
    mask: np.ndarray  # uint8 crop of the frame, 1 = this item's pixels
    area: int
    centroid: tuple[float, float]  # px of the frame
    entering: bool = False  # a new piece still touching the upstream edge of the picture
    # (x0, y0, x1, y1) in the frame; set once (the pairwise tests ask for it ~400 times a frame)
    box: tuple[int, int, int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", (self.x0, self.y0, self.x0 + self.mask.shape[1], self.y0 + self.mask.shape[0]))


def segment(fg: np.ndarray, priors: Sequence[Prior], slack: int, min_new_px: float,
            upstream: int = 1, near: int = 0, small_px: float = 0.0) -> list[Piece]:
    """Pieces of the item mask ``fg`` (uint8 HxW): one per prior that has pixels, plus new
    ones. ``upstream``: items come in over the left (+1) or right (-1) edge. A new piece
    smaller than ``small_px`` within ``near`` px of one touching the upstream edge is
    ``entering`` too: it is likely a fragment of the item coming in (split off by a dark
    band), so it waits until the rest of that item is in view and can join it."""
    h, w = fg.shape
    fg = (fg > 0).view(np.uint8)
    item = fg.view(bool)  # the same 0/1 mask, for boolean tests
    owner = np.zeros((h, w), np.uint16)
    for i in range(len(priors), 0, -1):  # the first prior that claims a pixel keeps it: paint it last
        _paint(owner, fg, priors[i - 1], i)
    for _ in range(max(0, slack)):
        grown = cv2.dilate(owner, _K3)
        free = (owner == 0) & item & (grown > 0)
        if not free.any():
            break
        owner[free] = grown[free]
    pieces: list[Piece] = []
    for i, p in enumerate(priors, start=1):
        if p.claim_only:
            continue
        piece = _piece(owner, i, p, slack, w, h)
        if piece is not None:
            pieces.append(piece)
    rest = ((owner == 0) & item).view(np.uint8)
    n, labels, stats, cents = cv2.connectedComponentsWithStats(rest, connectivity=4)
    small = (stats[1:, 4] < small_px).any() if near > 0 else False
    entering = _entering_groups(rest, labels, n, near, upstream) if small else None
    for j in range(1, n):
        x, y, bw, bh, a = (int(v) for v in stats[j])
        edge = x == 0 if upstream > 0 else x + bw == w
        edge = edge or (entering is not None and bool(entering[j]) and a < small_px)
        if a < min_new_px and not edge:
            continue
        crop = (labels[y:y + bh, x:x + bw] == j).astype(np.uint8)
        pieces.append(Piece(None, x, y, crop, a, (float(cents[j][0]), float(cents[j][1])), entering=edge))
    return pieces


def _entering_groups(rest: np.ndarray, labels: np.ndarray, n: int, near: int, upstream: int) -> np.ndarray:
    """bool per label of ``rest``: the component touches the upstream edge, or lies within
    ``near`` px of one that does (through a chain of such components)."""
    col = 0 if upstream > 0 else rest.shape[1] - 1
    out = np.zeros(n, bool)
    if not rest[:, col].any():
        return out
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * near + 1, 2 * near + 1))
    ng, groups = cv2.connectedComponents(cv2.dilate(rest, k), connectivity=8)
    edge = np.zeros(ng, bool)
    edge[groups[:, col]] = True
    edge[0] = False
    out[labels[edge[groups] & (rest > 0)]] = True
    out[0] = False
    return out


def rect_fill(mask: np.ndarray) -> float:
    """How box-like a mask is: its area over that of its minimum-area rectangle (at any
    angle). 1 for a box, 0.79 for a disc, less for two items side by side."""
    area, rect = _area_and_rect(mask)
    return area / rect if rect else 0.0


def _area_and_rect(mask: np.ndarray) -> tuple[int, float]:
    """Set pixels of ``mask`` and the area of their minimum-area rectangle (0 when empty)."""
    pts = cv2.findNonZero(mask)
    if pts is None:
        return 0, 0.0
    _, (w, h), _ = cv2.minAreaRect(pts)
    return cv2.countNonZero(mask), max((w + 1.0) * (h + 1.0), 1.0)


def rect_gain(whole: Piece, parts: Sequence[Piece]) -> float:
    """How much more box-like the least box-like of ``parts`` is than ``whole`` (may be < 0)."""
    return min(rect_fill(p.mask) for p in parts) - rect_fill(whole.mask)


def parts_fill(parts: Sequence[Piece]) -> float:
    """How box-like ``parts`` are together: their area over that of their rectangles, summed.
    Unlike the least box-like part (:func:`rect_gain`), one irregular item (a radio with a
    handle) beside a box does not make the pair look like one item."""
    sizes = [_area_and_rect(p.mask) for p in parts]
    area, rects = sum(a for a, _ in sizes), sum(r for _, r in sizes)
    return area / rects if rects else 0.0


def pair_canvas(a: Piece, b: Piece, pad: int) -> tuple[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    x0, y0 = min(a.x0, b.x0) - pad, min(a.y0, b.y0) - pad
    x1 = max(a.x0 + a.mask.shape[1], b.x0 + b.mask.shape[1]) + pad
    y1 = max(a.y0 + a.mask.shape[0], b.y0 + b.mask.shape[0]) + pad
    out = []
    for p in (a, b):
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        m[p.y0 - y0:p.y0 - y0 + p.mask.shape[0], p.x0 - x0:p.x0 - x0 + p.mask.shape[1]] = p.mask
        out.append(m)
    return (x0, y0), (out[0], out[1])


def closed_union(a: Piece, b: Piece, gap: int) -> tuple[tuple[int, int], np.ndarray]:
    """Both pieces on one canvas (its top-left in the frame, and the uint8 mask) with gaps up
    to ``gap`` px between them closed."""
    origin, (ma, mb) = pair_canvas(a, b, gap + 1)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1, 2 * gap + 1))
    return origin, cv2.morphologyEx(ma | mb, cv2.MORPH_CLOSE, k)


def _clip(p: Prior, w: int, h: int, pad: int = 0) -> tuple[int, int, int, int]:
    x0, y0 = max(0, p.x0 - pad), max(0, p.y0 - pad)
    x1, y1 = min(w, p.x0 + p.mask.shape[1] + pad), min(h, p.y0 + p.mask.shape[0] + pad)
    return x0, y0, x1, y1


def _paint(owner: np.ndarray, fg: np.ndarray, p: Prior, value: int) -> None:
    """``value`` on the item pixels (``fg``, 0/1) of the prior's footprint and entry strip,
    over whatever was painted there before."""
    h, w = fg.shape
    x0, y0, x1, y1 = _clip(p, w, h)
    if x1 > x0 and y1 > y0:
        sub = cv2.min(p.mask[y0 - p.y0:y1 - p.y0, x0 - p.x0:x1 - p.x0], fg[y0:y1, x0:x1])  # 0/1
        np.copyto(owner[y0:y1, x0:x1], value, where=sub.view(bool))
    if p.entering:
        _paint_entry(owner, fg, p, value)


def _paint_entry(owner: np.ndarray, fg: np.ndarray, p: Prior, value: int) -> None:
    """The strip between the upstream edge of the picture and the footprint, in the rows
    where the footprint reaches its own upstream end."""
    h, w = fg.shape
    mw = p.mask.shape[1]
    if p.entering > 0:
        xa, xb, cols = 0, min(w, p.x0 + 1), p.mask[:, : min(3, mw)]
    else:
        xa, xb, cols = max(0, p.x0 + mw - 1), w, p.mask[:, max(0, mw - 3):]
    if xb <= xa:
        return
    rows = np.flatnonzero(cols.any(axis=1))
    if len(rows) == 0:
        return
    r0, r1 = max(0, p.y0 + int(rows[0])), min(h, p.y0 + int(rows[-1]) + 1)
    if r1 <= r0:
        return
    np.copyto(owner[r0:r1, xa:xb], value, where=fg[r0:r1, xa:xb].view(bool))


def _piece(owner: np.ndarray, value: int, p: Prior, slack: int, w: int, h: int) -> Piece | None:
    x0, y0, x1, y1 = _clip(p, w, h, pad=slack)
    if p.entering > 0:
        x0 = 0
    elif p.entering < 0:
        x1 = w
    if x1 <= x0 or y1 <= y0:
        return None
    sub = (owner[y0:y1, x0:x1] == value).view(np.uint8)
    return piece_from_mask(p.key, sub, x0, y0)


def piece_from_mask(key: int | None, mask: np.ndarray, x0: int, y0: int) -> Piece | None:
    """The piece of the set pixels of ``mask`` (a crop whose top-left is at x0, y0)."""
    bx, by, bw, bh = cv2.boundingRect(mask)
    if bw == 0 or bh == 0:
        return None
    crop = np.ascontiguousarray(mask[by:by + bh, bx:bx + bw])
    mo = cv2.moments(crop, binaryImage=True)
    if mo["m00"] <= 0:
        return None
    cx, cy = mo["m10"] / mo["m00"] + bx + x0, mo["m01"] / mo["m00"] + by + y0
    return Piece(key, x0 + bx, y0 + by, crop, int(round(mo["m00"])), (float(cx), float(cy)))


def mean_contrast(contrast: np.ndarray, piece: Piece) -> float:
    """Mean difference from the belt (in threshold units) over a piece's pixels."""
    x0, y0, x1, y1 = piece.box
    sub = contrast[y0:y1, x0:x1]
    return float(sub[piece.mask > 0].mean()) if sub.size else 0.0


def occupancy(shape: tuple[int, int], pieces: Sequence[Piece]) -> np.ndarray:
    """uint8 image of the frame (``shape``), 1 on the pixels of any of ``pieces``."""
    occ = np.zeros(shape, np.uint8)
    for p in pieces:
        h, w = p.mask.shape
        sub = occ[p.y0:p.y0 + h, p.x0:p.x0 + w]
        np.bitwise_or(sub, p.mask[:sub.shape[0], :sub.shape[1]], out=sub)
    return occ


def alone(piece: Piece, occ: np.ndarray, gap: int) -> bool:
    """No pixel of ``occ`` (see :func:`occupancy`; it may include ``piece``) within ``gap`` px
    of ``piece``, other than the piece's own."""
    h, w = piece.mask.shape
    y0, x0 = max(0, piece.y0 - gap), max(0, piece.x0 - gap)
    y1, x1 = min(occ.shape[0], piece.y0 + h + gap), min(occ.shape[1], piece.x0 + w + gap)
    own = np.zeros((y1 - y0, x1 - x0), np.uint8)
    py, px = piece.y0 - y0, piece.x0 - x0
    own[py:py + h, px:px + w] = piece.mask[:own.shape[0] - py, :own.shape[1] - px]
    ring = cv2.dilate(own, np.ones((2 * gap + 1, 2 * gap + 1), np.uint8)) & (own == 0)
    return not np.any(occ[y0:y1, x0:x1][ring > 0])


# -- footprints: an item's pixels over its last few frames, moved with the belt ---------
def move_footprint(view: "CameraView", shift: tuple[float, float], scale: tuple[float, float]) -> None:
    """Move a footprint with the belt (whole downscaled px; the fraction carries over)."""
    fx, fy = view.fx + shift[0] / scale[0], view.fy + shift[1] / scale[1]
    ix, iy = int(round(fx)), int(round(fy))
    view.x0 += ix
    view.y0 += iy
    view.fx, view.fy = fx - ix, fy - iy


@functools.lru_cache(maxsize=8)
def _aged(keep: int) -> np.ndarray:
    """Lookup table of a footprint pixel's age one frame on: +1, EMPTY once older than ``keep``
    (EMPTY stays EMPTY)."""
    older = np.arange(1, 257)
    older[older > keep] = EMPTY
    return np.minimum(older, EMPTY).astype(np.uint8)


def merge_footprint(view: "CameraView", piece: Piece, keep: int) -> None:
    """Age the old footprint by a frame, stamp the new piece, forget pixels older than ``keep``."""
    ph, pw = piece.mask.shape
    oh, ow = view.age.shape
    x0, y0 = min(view.x0, piece.x0), min(view.y0, piece.y0)
    x1, y1 = max(view.x0 + ow, piece.x0 + pw), max(view.y0 + oh, piece.y0 + ph)
    age = np.full((y1 - y0, x1 - x0), EMPTY, np.uint8)
    age[view.y0 - y0:view.y0 - y0 + oh, view.x0 - x0:view.x0 - x0 + ow] = cv2.LUT(view.age, _aged(keep))
    sub = age[piece.y0 - y0:piece.y0 - y0 + ph, piece.x0 - x0:piece.x0 - x0 + pw]
    sub[piece.mask > 0] = 0
    occupied = (age != EMPTY).view(np.uint8)
    bx, by, bw, bh = cv2.boundingRect(occupied)
    view.age = np.ascontiguousarray(age[by:by + bh, bx:bx + bw])
    view.footprint = np.ascontiguousarray(occupied[by:by + bh, bx:bx + bw])
    view.x0, view.y0 = x0 + bx, y0 + by
