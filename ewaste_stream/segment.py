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

All coordinates are px of the detector's downscaled image.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import cv2
import numpy as np

from .detect import fill_holes

if TYPE_CHECKING:  # pragma: no cover
    from .track import CameraView

_K3 = np.ones((3, 3), np.uint8)
EMPTY = np.uint8(255)  # footprint age of a pixel the item does not cover
BOX_SHARE = 0.9  # a piece this much inside a bigger piece's box needs only half the hull share to join it


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


def split_piece(piece: Piece, neck_ratio: float, min_radius: float, min_rect_gain: float | None = None) -> list[Piece]:
    """A new piece that is several touching items -> one piece per item (cut at its necks,
    :func:`split_touching`). With ``min_rect_gain``, the cut is kept only if even its least
    box-like part is that much more box-like than the piece (:func:`rect_gain`; a negative
    value allows that much less): one item cut
    across its middle (a dark band through it) gives two parts that fill their rectangles
    worse than the item did, two items cut apart give parts that fill them better."""
    parts = split_touching(piece.mask, neck_ratio, min_radius)
    if len(parts) == 1:
        return [piece]
    out = [p for p in (piece_from_mask(None, part, piece.x0, piece.y0) for part in parts) if p is not None]
    if min_rect_gain is not None and len(out) > 1 and rect_gain(piece, out) < min_rect_gain:
        return [piece]
    return out


def mask_length(mask: np.ndarray) -> float:
    """The long side (px) of the minimum-area rectangle of the set pixels of ``mask`` (not empty),
    at any angle."""
    _, (w, h), _ = cv2.minAreaRect(cv2.findNonZero(mask))
    return max(w, h)


def piece_length(piece: Piece) -> float:
    """The long side (px) of the piece's minimum-area rectangle: :func:`mask_length`."""
    return mask_length(piece.mask)


def cut_too_long(piece: Piece, max_length: float, min_px: float, min_share: float = 0.3) -> list[Piece]:
    """A new piece longer than any item (``max_length`` px, the long side of its minimum-area
    rectangle) is two items or more: mostly two lying one behind the other along the belt,
    whose gap blur and shadows closed, so that no neck shows. It is cut straight across its
    long (principal) axis where it is narrowest (:func:`_narrowest`), at least ``min_share``
    of its length from either end; both parts must have ``min_px`` px (else it stays whole),
    and a part still too long is cut again."""
    if piece_length(piece) <= max_length:
        return [piece]
    ys, xs = np.nonzero(piece.mask)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    centred = pts - pts.mean(axis=0)
    _, vecs = np.linalg.eigh(centred.T @ centred)
    along = centred @ vecs[:, -1]  # position along the principal axis
    bins = np.floor(along - along.min()).astype(np.intp)
    width = np.bincount(bins).astype(np.float64)  # px across the piece at each px of its length
    n = len(width)
    lo, hi = int(np.ceil(min_share * n)), n - int(np.ceil(min_share * n))
    if hi <= lo:
        return [piece]
    cut = _narrowest(np.convolve(width, np.ones(3) / 3.0, mode="same"), lo, hi)
    parts = []
    for side in (bins < cut, bins >= cut):
        m = np.zeros_like(piece.mask)
        m[ys[side], xs[side]] = 1
        part = piece_from_mask(None, m, piece.x0, piece.y0)
        if part is None or part.area < min_px:
            return [piece]
        parts.append(part)
    return [q for part in parts for q in cut_too_long(part, max_length, min_px, min_share)]


def _narrowest(width: np.ndarray, lo: int, hi: int, tol: float = 1.0) -> int:
    """Where to cut a profile of widths between ``lo`` and ``hi``: at its narrowest. Where the
    narrowest stretch is a plateau (a narrower item beside a wider one, both with straight
    sides), at the end of it where the width rises more (the other item starts there); with no
    rise at either end (two items of one width), in the middle of the plateau."""
    k = lo + int(np.argmin(width[lo:hi]))
    floor = width[k] + tol
    a, b = k, k
    while a > 0 and width[a - 1] <= floor:
        a -= 1
    while b < len(width) - 1 and width[b + 1] <= floor:
        b += 1
    rise_a = width[a - 1] - width[k] if a > 0 else 0.0
    rise_b = width[b + 1] - width[k] if b < len(width) - 1 else 0.0
    if max(rise_a, rise_b) <= tol:
        cut = (max(a, lo) + min(b + 1, hi)) // 2
    else:
        cut = a if rise_a >= rise_b else b + 1
    return min(max(cut, lo), hi)


def split_by_core(piece: Piece, core: np.ndarray, min_px: float, min_radius: float, min_rect_gain: float) -> list[Piece]:
    """A new piece that is two or more items joined by a dark band -> one piece per item.

    ``core`` (uint8, the frame's size): the item pixels that differ from the belt by
    brightness or colour, not by darkness alone. Two neighbours a few px apart can join
    through the gap between them, where both their shadows fall and the belt is darker than
    one shadow makes it. Their cores are apart: when the piece holds two or more cores (holes
    filled) of at least ``min_px`` px and ``min_radius`` thick, it is cut into one part per
    core (each grown over the piece's pixels nearest it), if the parts are at least
    ``min_rect_gain`` *more* box-like together than the piece (:func:`parts_fill`). A single item with
    bright parts apart (a label, a screen in a dark frame) does not gain: it stays whole."""
    if piece.area < 2 * min_px:
        return [piece]  # too small to hold two cores
    x0, y0, x1, y1 = piece.box
    cores = fill_holes(cv2.bitwise_and(core[y0:y1, x0:x1], piece.mask))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cores, connectivity=8)
    seeds = [sd for sd in (labels == j for j in range(1, n) if stats[j, 4] >= min_px)
             if inscribed_radius(sd) >= min_radius]
    return _split_by_seeds(piece, seeds, min_rect_gain)


def _split_by_seeds(piece: Piece, seeds: list[np.ndarray], min_rect_gain: float) -> list[Piece]:
    """The piece cut into one part per seed (bool masks of the piece's crop), each grown over
    the piece's pixels nearest it, if the parts together (:func:`parts_fill`) are at least
    ``min_rect_gain`` more box-like than the piece. With three or more seeds, every way of
    putting the (five largest) seeds into two groups is tried too, and the most box-like cut
    wins: one item whose bright parts are apart (a screen's rim) next to another item is two
    parts, not three."""
    if len(seeds) < 2:
        return [piece]
    groupings = [[[sd] for sd in seeds]]
    if len(seeds) > 2:
        top = sorted(seeds, key=lambda sd: -int(np.count_nonzero(sd)))[:5]
        for bits in range(1, 2 ** (len(top) - 1)):
            groupings.append([[sd for i, sd in enumerate(top) if bits >> i & 1],
                              [sd for i, sd in enumerate(top) if not bits >> i & 1]])
    whole = rect_fill(piece.mask)
    best, best_gain = [piece], -np.inf
    for groups in groupings:
        merged = [np.logical_or.reduce(g) for g in groups]
        out = [p for p in (piece_from_mask(None, part, piece.x0, piece.y0) for part in _grow(piece.mask, merged))
               if p is not None]
        if len(out) < 2:
            continue
        gain = parts_fill(out) - whole
        if gain > best_gain:
            best, best_gain = out, gain
    return best if best_gain >= min_rect_gain else [piece]


def split_by_fine_core(piece: Piece, image: np.ndarray, scale: tuple[float, float], min_px: float,
                       min_radius: float, min_rect_gain: float, k: float = 3.0, floor: float = 10.0) -> list[Piece]:
    """:func:`split_by_core` on the full-resolution picture (``image``, BGR; ``scale``: the
    mask's px -> the picture's px), for a piece no track has claimed yet. Two items
    one behind the other along the belt, 10 px apart, keep only ~3 px of clean belt between
    them once motion-blurred: under one px at the mask's scale, but there at full resolution.
    The cores are :func:`fine_core`'s (``k``, ``floor``). Cores of at least ``min_px`` (px
    of the mask's scale) and ``min_radius`` thick are the seeds of :func:`_split_by_seeds`."""
    if piece.area < 2 * min_px:
        return [piece]
    fine = fine_core(piece, image, scale, k, floor)
    if fine is None:
        return [piece]
    sx, sy = scale
    h, w = piece.mask.shape
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fine.core, connectivity=8)
    seeds = []
    for j in range(1, n):
        if stats[j, cv2.CC_STAT_AREA] < min_px * sx * sy:
            continue
        seed = (cv2.resize(fine.on_piece(labels == j), (w, h), interpolation=cv2.INTER_AREA) >= 0.5).astype(np.uint8)
        seed &= piece.mask
        if cv2.countNonZero(seed) and inscribed_radius(seed) >= min_radius:
            seeds.append(seed > 0)
    return _split_by_seeds(piece, seeds, min_rect_gain)


def bridged(piece: Piece, parts: Sequence[Piece], image: np.ndarray, scale: tuple[float, float],
            share: float, k: float = 3.0, floor: float = 10.0) -> bool:
    """Whether ``parts`` of ``piece`` are one item on the full-resolution picture: at least
    ``share`` of every part's :func:`fine_core` pixels lie in cores that reach into another part.

    A cut at a neck of the mask (:func:`split_piece`) parts two items that touch at the mask's
    scale, or one item with a narrow waist (a dark band across a washing machine, a battery's
    cap). Two items 10 px apart keep a line of clean belt between them at full resolution,
    which parts their cores; one item's bright or coloured surface runs on through its
    waist. Dark parts of an item show no core, so they never hold a cut back."""
    fine = fine_core(piece, image, scale, k, floor)
    if fine is None:
        return False
    cores = _part_cores(fine, piece, parts)
    return all(n_core > 0 and joined >= share * n_core for joined, n_core, _ in cores)


def parted(a: Piece, b: Piece, image: np.ndarray, scale: tuple[float, float], min_px: float, min_core: float,
           reach: int = 2, share: float = 0.5, k: float = 3.0, floor: float = 10.0) -> bool:
    """Whether two pieces side by side are two items by the full-resolution picture: both are at
    least ``min_px`` (px of the mask's scale), at least ``min_core`` of each one's pixels are
    bright or coloured (:func:`fine_core`, looked at over both pieces and the gap of up to
    ``reach`` px between them), and under ``share`` of either's core pixels lie in cores that
    reach into the other (:func:`bridged`'s test, the other way round).

    Two bright items 10 px apart whose masks blur together keep a line of clean belt between
    their cores. A dark piece beside a bright one says nothing: a dark item's body and the dark
    part of a bright item look alike there, so it is never called apart."""
    if a.area < min_px or b.area < min_px:
        return False
    (x0, y0), closed = _closed_union(a, b, reach)
    whole = piece_from_mask(None, closed, x0, y0)  # across the gap too
    if whole is None:
        return False
    fine = fine_core(whole, image, scale, k, floor)
    if fine is None:
        return False
    cores = _part_cores(fine, whole, (a, b))
    return all(n_core >= min_core * n_px and joined < share * n_core for joined, n_core, n_px in cores)


def _part_cores(fine: FineCore, piece: Piece, parts: Sequence[Piece]) -> list[tuple[int, int, int]]:
    """Per part of ``piece``, on the picture: (its core pixels in cores that reach into another
    part, its core pixels, its pixels)."""
    n, labels = cv2.connectedComponents(fine.core, connectivity=8)
    counts, sizes = [], []
    for part in parts:
        own = np.zeros(piece.mask.shape, np.uint8)
        x, y = part.x0 - piece.x0, part.y0 - piece.y0
        own[y:y + part.mask.shape[0], x:x + part.mask.shape[1]] = part.mask
        on = fine.from_piece(own)
        sizes.append(cv2.countNonZero(on))
        on &= fine.core
        counts.append(np.bincount(labels[on > 0], minlength=n))
    total = sum(counts)
    out = []
    for c, size in zip(counts, sizes):
        shared = (c > 0) & (total > c)
        shared[0] = False
        out.append((int(c[shared].sum()), int(c[1:].sum()), size))
    return out


@dataclass(frozen=True)
class FineCore:
    """:func:`fine_core`'s answer: the core pixels on a crop of the picture around a piece."""

    core: np.ndarray  # uint8 crop of the picture, 1 = core pixel of the piece
    at: tuple[int, int]  # where the piece's box starts in the crop (x, y), picture px
    size: tuple[int, int]  # the piece's box in picture px (W, H)

    def from_piece(self, mask: np.ndarray) -> np.ndarray:
        """A mask of the piece's box (mask scale) on the crop, nearest-neighbour."""
        (x, y), (w, h) = self.at, self.size
        out = np.zeros_like(self.core)
        sub = out[y:y + h, x:x + w]  # cut short where the piece's box leaves the picture
        sub[:] = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)[:sub.shape[0], :sub.shape[1]]
        return out

    def on_piece(self, crop_mask: np.ndarray) -> np.ndarray:
        """A bool mask of the crop as float32 over the piece's box (picture px), zeros past the picture."""
        (x, y), (w, h) = self.at, self.size
        comp = crop_mask.astype(np.float32)[y:y + h, x:x + w]
        if comp.shape != (h, w):
            comp = cv2.copyMakeBorder(comp, 0, h - comp.shape[0], 0, w - comp.shape[1], cv2.BORDER_CONSTANT, value=0)
        return comp


def fine_core(piece: Piece, image: np.ndarray, scale: tuple[float, float], k: float = 3.0,
              floor: float = 10.0) -> FineCore | None:
    """The piece's core pixels on the full-resolution picture (``image``, BGR; ``scale``: the
    mask's px -> the picture's px): brighter than the belt, or another colour, by ``k`` x the
    belt's spread there (at least ``floor`` grey levels), in a 3x3 opening. The belt's look is
    taken from the picture around the piece (the median of the pixels off it). None when the
    piece is too near the picture's edge to see the belt around it."""
    sx, sy = scale
    h, w = piece.mask.shape
    ih, iw = image.shape[:2]
    pad = int(np.ceil(2 * max(sx, sy)))
    X0, Y0 = int(round(piece.x0 * sx)), int(round(piece.y0 * sy))
    W, H = int(round(w * sx)), int(round(h * sy))
    a0, b0, a1, b1 = max(0, X0 - pad), max(0, Y0 - pad), min(iw, X0 + W + pad), min(ih, Y0 + H + pad)
    if a1 - a0 < 8 or b1 - b0 < 8:
        return None
    crop = image[b0:b1, a0:a1].astype(np.float32)
    fine = FineCore(np.zeros((b1 - b0, a1 - a0), np.uint8), (X0 - a0, Y0 - b0), (W, H))  # at >= 0
    m = fine.from_piece(piece.mask)
    belt = cv2.dilate(m, np.ones((pad + 1, pad + 1), np.uint8)) == 0
    if np.count_nonzero(belt) < 64:
        return None
    b, g, r = cv2.split(crop)
    out = []
    for ch in ((b + g + r) / 3.0, b - g, r - g):
        vals = ch[belt]
        ref = _median(vals)
        spread = 1.4826 * _median(np.abs(vals - ref, out=vals))
        out.append((ch - ref, max(floor, k * spread)))
    (dl, tl), (d1, t1), (d2, t2) = out
    core = ((dl > tl) | (np.abs(d1) > t1) | (np.abs(d2) > t2)).astype(np.uint8) & m
    fine.core[:] = cv2.morphologyEx(core, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return fine


def _median(a: np.ndarray) -> np.floating:
    """``np.median`` of a 1-D array without NaNs, the same value without its checks and wrappers
    (called for every new piece, every frame)."""
    n = a.size
    k = n // 2
    if n % 2:
        return np.partition(a, k)[k]
    part = np.partition(a, (k - 1, k))
    return (part[k - 1] + part[k]) / a.dtype.type(2)


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


def join_fragments(new: list[Piece], others: list[Piece], gap: int, neck_ratio: float,
                   min_radius: float, small: tuple[float, int] = (0.0, 0),
                   box_join: tuple[int, float] | None = None,
                   item_join: tuple[int, float] | None = None,
                   apart: Callable[[Piece, Piece, int], bool] | None = None,
                   max_length: float | None = None) -> tuple[list[Piece], dict[int, Piece]]:
    """Join new pieces that are fragments of an item next to them (an item with dark parts
    shows as several pieces; new items come in over the upstream edge, not beside others).

    A new piece joins a tracked piece when it lies mostly inside that item's outline (convex
    hull: items never overlap, so it is a part of it), or joins a piece within ``gap`` px (a
    tracked one first, else a bigger new one) when the two together, gaps closed, are one
    compact item (no narrow neck, see :func:`split_touching`); two items side by side have a
    neck between them and stay apart. ``apart(a, b, gap)``, when given, vetoes that join for
    two pieces a closer look over that gap tells apart (:func:`parted`: two bright items whose masks blurred
    together along a wide side, which leaves no neck).
    ``box_join`` = (reach px, max loss): a small new piece (under ``small[0]`` px) within that
    reach of a bigger piece (tracked or new) also joins it when the two together are compact
    and fill their rectangle at most ``max loss`` worse than the bigger piece alone
    (:func:`rect_fill`): it completes that item's box (a part of a dark item split off by a
    dark band), where a neighbour lying at another angle would not.
    ``item_join`` = (reach px, min gain): a new piece of any size within that reach of a piece
    at least as big (tracked or new) joins it when the two together fill their rectangle at
    least ``min gain`` better than the more box-like of the two alone: the halves of a dark
    item cut by a dark band. Two neighbours lie at different angles or are offset; their union
    fills its rectangle worse than either.
    ``max_length`` (px): no join makes a piece longer than that (the long side of its
    minimum-area rectangle; see :func:`cut_too_long`).
    Returns the new pieces left and ``{track key: grown piece}`` for tracked pieces that
    took fragments."""
    grown: dict[int, Piece] = {}
    tracked = {p.key: p for p in others if p.key is not None}
    left = sorted(new, key=lambda p: p.area)
    out: list[Piece] = []
    hulls: dict[int, tuple[Piece, np.ndarray]] = {}
    while left:
        frag = left.pop(0)
        target = next((("t", k, p) for k, p in tracked.items() if _inside_hull(frag, p, hulls) >= 0.5), None)
        cands = [("t", k, p) for k, p in tracked.items()] + [("n", i, p) for i, p in enumerate(left)]
        if target is None:
            g = max(gap, small[1]) if frag.area < small[0] else gap
            target = next((c for c in cands if _near(frag, c[2], g)
                           and _compact(frag, c[2], g, neck_ratio, min_radius)
                           and (apart is None or not apart(frag, c[2], g))), None)
        if target is None and box_join is not None and frag.area < small[0]:
            target = next((c for c in cands if c[2].area > frag.area and _completes_box(frag, c[2], box_join, neck_ratio,
                                                                                     min_radius)), None)
        if target is None and item_join is not None:
            target = next((c for c in cands if c[2].area >= frag.area and _makes_box(frag, c[2], item_join)), None)
        if target is not None:
            kind, idx, other = target
            joined = union(other, frag, idx if kind == "t" else None)
            if max_length is not None and piece_length(joined) > max_length:
                target = None  # together longer than any item: two items
        if target is None:
            out.append(frag)
        elif kind == "t":
            tracked[idx] = grown[idx] = joined
        else:
            left[idx] = joined
            left.sort(key=lambda p: p.area)
    return out, grown


def _completes_box(frag: Piece, item: Piece, box_join: tuple[int, float], neck_ratio: float, min_radius: float) -> bool:
    reach, max_loss = box_join
    return (_near(frag, item, reach) and _compact(frag, item, reach, neck_ratio, min_radius)
            and rect_fill(union(frag, item, None).mask) >= rect_fill(item.mask) - max_loss)


def _makes_box(a: Piece, b: Piece, item_join: tuple[int, float]) -> bool:
    reach, min_gain = item_join
    return (_near(a, b, reach)
            and rect_fill(union(a, b, None).mask) >= max(rect_fill(a.mask), rect_fill(b.mask)) + min_gain)


def parts_of_one_item(pieces: Sequence[Piece], reach: int, max_length: float,
                      min_contact: float = 0.0) -> list[tuple[int, int]]:
    """Pairs of tracked pieces (their keys) that may be two parts of one item: within ``reach`` px
    of each other, together no longer than ``max_length`` px (the long side of their
    minimum-area rectangle, at any angle), and facing each other along at least ``min_contact``
    x the square root of the smaller one's area (px of either piece within 1.5 px of their
    narrowest gap plus that gap). A dark item cut by a dark band stays within the size of one
    item, and its parts face each other all along the cut; two neighbours lying that close
    together are mostly longer than any one item, or touch at a corner. The test holds for some
    neighbours too (two small items side by side), so the tracker asks for it in several frames
    (``tracker.part_join_frames``)."""
    out: list[tuple[int, int]] = []
    longest_box = max_length * math.sqrt(2.0)  # pixels whose box is longer than this have a longer rectangle
    keyed = [p for p in pieces if p.key is not None]
    for i, a in enumerate(keyed):
        ax0, ay0, ax1, ay1 = a.box
        for b in keyed[i + 1:]:
            bx0, by0, bx1, by1 = b.box
            if max(ax1, bx1) - min(ax0, bx0) > longest_box or max(ay1, by1) - min(ay0, by0) > longest_box:
                continue
            if not _near(a, b, reach):
                continue
            pts = np.concatenate([cv2.findNonZero(a.mask) + np.array([a.x0, a.y0], np.int32),
                                  cv2.findNonZero(b.mask) + np.array([b.x0, b.y0], np.int32)])
            _, (w, h), _ = cv2.minAreaRect(pts)
            if max(w, h) > max_length:
                continue
            if min_contact <= 0 or _contact(a, b) >= min_contact * math.sqrt(min(a.area, b.area)):
                out.append((a.key, b.key))  # type: ignore[arg-type]
    return out


def _contact(a: Piece, b: Piece) -> int:
    """Px of the piece that faces the other more, within 1.5 px of the two's narrowest gap plus that gap."""
    _, (ma, mb) = _canvas(a, b, 0)
    da = cv2.distanceTransform(1 - ma, cv2.DIST_L2, 3)
    db = cv2.distanceTransform(1 - mb, cv2.DIST_L2, 3)
    near = float(da[mb > 0].min()) + 1.5
    return max(int(np.count_nonzero((da <= near) & (mb > 0))), int(np.count_nonzero((db <= near) & (ma > 0))))


def absorb_inside(pieces: list[Piece], share: float, locked: set[int]) -> tuple[list[Piece], list[tuple[int, int]]]:
    """Pieces of one item that became separate pieces (tracked or new): a piece lying at
    least ``share`` inside the convex hull of a bigger one is part of it (items never
    overlap), e.g. the parts of a dark item that broke up before it was fully in view, or
    the rest of an item arriving beside a fragment of it that is tracked already.

    The union keeps a track key: the bigger piece's, else the smaller's. Two tracked pieces
    become one: ``(absorbed key, kept key)`` is returned; a ``locked`` key (a track decided
    or crossing already) is never absorbed, so two locked pieces stay apart.
    Returns the pieces left (largest first) and the absorbed track pairs."""
    left = sorted(pieces, key=lambda p: -p.area)
    boxes = [p.box for p in left]
    merged: list[tuple[int, int]] = []
    hulls: dict[int, tuple[Piece, np.ndarray]] = {}
    i = len(left) - 1
    while i > 0:
        small = left[i]
        sx0, sy0, sx1, sy1 = boxes[i]
        j = next((j for j in range(i) if boxes[j][0] < sx1 and sx0 < boxes[j][2] and boxes[j][1] < sy1
                  and sy0 < boxes[j][3]  # boxes overlap: cheap test first, most pairs are far apart
                  and _belongs(small, left[j], share, hulls) and _may_join(small.key, left[j].key, locked)), None)
        if j is not None:
            big = left[j]
            keep = big.key if big.key is not None else small.key
            if big.key is not None and small.key is not None:
                if big.key in locked or small.key not in locked:
                    merged.append((small.key, big.key))
                else:
                    keep = small.key
                    merged.append((big.key, small.key))
            left[j] = union(big, small, keep)
            boxes[j] = left[j].box
            del left[i], boxes[i]
        i -= 1
    return left, merged


def _belongs(small: Piece, big: Piece, share: float, hulls: dict[int, tuple[Piece, np.ndarray]] | None = None) -> bool:
    """``small`` lies ``share`` inside ``big``'s hull, or half that and within its box."""
    inside = _inside_hull(small, big, hulls)
    if inside >= share:
        return True
    if inside < share / 2:
        return False
    sx0, sy0, sx1, sy1 = small.box
    bx0, by0, bx1, by1 = big.box
    ov = max(0, min(sx1, bx1) - max(sx0, bx0)) * max(0, min(sy1, by1) - max(sy0, by0))
    return ov >= BOX_SHARE * (sx1 - sx0) * (sy1 - sy0)


def _may_join(a: int | None, b: int | None, locked: set[int]) -> bool:
    return a is None or b is None or not (a in locked and b in locked)


def _inside_hull(frag: Piece, item: Piece, hulls: dict[int, tuple[Piece, np.ndarray]] | None = None) -> float:
    """Share of ``frag``'s pixels inside the convex hull of ``item``. ``hulls``: a cache of
    hulls by piece, for a caller that tests many fragments against the same items."""
    fx0, fy0, fx1, fy1 = frag.box
    ix0, iy0, ix1, iy1 = item.box
    if fx1 <= ix0 or ix1 <= fx0 or fy1 <= iy0 or iy1 <= fy0:
        return 0.0
    known = hulls.get(id(item)) if hulls is not None else None
    if known is not None and known[0] is item:
        hull = known[1]
    else:
        contours, _ = cv2.findContours(item.mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull = cv2.convexHull(np.vstack(contours).reshape(-1, 2) + np.array([item.x0, item.y0], np.int32))
        if hulls is not None:
            hulls[id(item)] = (item, hull)  # the piece itself is kept: its id is not reused meanwhile
    canvas = np.zeros((frag.mask.shape[0], frag.mask.shape[1]), np.uint8)
    cv2.fillPoly(canvas, [hull - np.array([frag.x0, frag.y0], np.int32)], 1)
    return float((canvas & frag.mask).sum()) / max(1, frag.area)


def _near(a: Piece, b: Piece, gap: int) -> bool:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    if ax1 + gap <= bx0 or bx1 + gap <= ax0 or ay1 + gap <= by0 or by1 + gap <= ay0:
        return False
    u, (ma, mb) = _canvas(a, b, gap)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1, 2 * gap + 1))
    return bool((cv2.dilate(ma, k) & mb).any())


def _canvas(a: Piece, b: Piece, pad: int) -> tuple[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    x0, y0 = min(a.x0, b.x0) - pad, min(a.y0, b.y0) - pad
    x1 = max(a.x0 + a.mask.shape[1], b.x0 + b.mask.shape[1]) + pad
    y1 = max(a.y0 + a.mask.shape[0], b.y0 + b.mask.shape[0]) + pad
    out = []
    for p in (a, b):
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        m[p.y0 - y0:p.y0 - y0 + p.mask.shape[0], p.x0 - x0:p.x0 - x0 + p.mask.shape[1]] = p.mask
        out.append(m)
    return (x0, y0), (out[0], out[1])


def _compact(a: Piece, b: Piece, gap: int, neck_ratio: float, min_radius: float) -> bool:
    _, closed = _closed_union(a, b, gap)
    return len(split_touching(closed, neck_ratio, min_radius)) == 1


def _closed_union(a: Piece, b: Piece, gap: int) -> tuple[tuple[int, int], np.ndarray]:
    """Both pieces on one canvas (its top-left in the frame, and the uint8 mask) with gaps up
    to ``gap`` px between them closed."""
    origin, (ma, mb) = _canvas(a, b, gap + 1)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1, 2 * gap + 1))
    return origin, cv2.morphologyEx(ma | mb, cv2.MORPH_CLOSE, k)


def union(a: Piece, b: Piece, key: int | None) -> Piece:
    """One piece of the pixels of both, under ``key``."""
    (x0, y0), (ma, mb) = _canvas(a, b, 0)
    out = piece_from_mask(key, ma | mb, x0, y0)
    assert out is not None
    return out


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


def inscribed_radius(mask: np.ndarray) -> float:
    """Largest distance (px) from a set pixel of ``mask`` to the background: half its thickness."""
    padded = cv2.copyMakeBorder((mask > 0).astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    return float(cv2.distanceTransform(padded, cv2.DIST_L2, 3).max())


def split_touching(mask: np.ndarray, neck_ratio: float = 0.6, min_radius: float = 2.5) -> list[np.ndarray]:
    """Split a region made of several items that touch (a few px apart, merged in the mask).

    Items are compact; where two touch, the region has a *neck* much narrower than either
    item. Raising a threshold on the distance to the background cuts the region at its
    necks: the first level ``s`` at which two or more parts remain whose own depth (largest
    distance, the inscribed radius) is at least ``s / neck_ratio`` (and ``min_radius``)
    separates items; those parts grow back over the region (each pixel to the nearest
    part), and each part is split again the same way. A single item, even a non-convex one,
    has no such narrow neck and comes back whole. Returns uint8 masks of ``mask``'s shape.
    """
    m = (mask > 0).astype(np.uint8)
    dist = cv2.distanceTransform(cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0), cv2.DIST_L2, 3)
    dist = dist[1:-1, 1:-1]
    top = float(dist.max())
    if top < min_radius:  # no part of it is as thick as an item: nothing to split it into
        return [m]
    level = 1.0
    while level < top * neck_ratio:
        n, lab = cv2.connectedComponents((dist > level).astype(np.uint8), connectivity=8)
        # the parts deep enough: those holding a pixel at least that far in (>= level, so inside a part)
        deep = np.unique(lab[dist >= max(min_radius, level / neck_ratio)]) if n > 2 else np.zeros(0, np.int32)
        deep = deep[deep > 0]
        if len(deep) >= 2:
            parts = _grow(m, [lab == i for i in deep])
            return [q for p in parts for q in split_touching(p, neck_ratio, min_radius)]
        level += 0.5
    return [m]


def _grow(m: np.ndarray, seeds: list[np.ndarray]) -> list[np.ndarray]:
    """Grow labelled seeds over mask ``m`` (constrained dilation) until every pixel has one."""
    lab = np.zeros(m.shape, np.uint16)
    for i, sd in enumerate(seeds, start=1):
        lab[sd] = i
    todo = (m > 0) & (lab == 0)
    while todo.any():
        grown = cv2.dilate(lab, _K3)
        take = todo & (grown > 0)
        if not take.any():
            break
        lab[take] = grown[take]
        todo &= ~take
    return [(lab == i).astype(np.uint8) for i in range(1, len(seeds) + 1)]


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
