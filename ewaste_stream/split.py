"""Cutting one piece of the item mask into the items it holds (the tracker's new pieces).

Two items that touch, or lie closer than the detector's scale can show, come out of
:func:`segment.segment` as one piece. They are cut apart at a neck (:func:`split_touching`),
along the brighter or more colourful cores of the items (:func:`split_by_core`,
:func:`split_by_fine_core`), or straight across when the piece is longer than any item
(:func:`cut_too_long`). Each cut is kept only when its parts look more like items than the
whole did (:func:`segment.rect_gain`). All coordinates are px of the detector's downscaled image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from .detect import fill_holes
from .segment import Piece, closed_union, parts_fill, piece_from_mask, rect_fill, rect_gain

_K3 = np.ones((3, 3), np.uint8)


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
                       min_radius: float, min_rect_gain: float) -> list[Piece]:
    """:func:`split_by_core` on the full-resolution picture (``image``, BGR; ``scale``: the
    mask's px -> the picture's px), for a piece no track has claimed yet. Two items
    one behind the other along the belt, 10 px apart, keep only ~3 px of clean belt between
    them once motion-blurred: under one px at the mask's scale, but there at full resolution.
    The cores are :func:`fine_core`'s. Cores of at least ``min_px`` (px
    of the mask's scale) and ``min_radius`` thick are the seeds of :func:`_split_by_seeds`."""
    if piece.area < 2 * min_px:
        return [piece]
    fine = fine_core(piece, image, scale)
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
            share: float) -> bool:
    """Whether ``parts`` of ``piece`` are one item on the full-resolution picture: at least
    ``share`` of every part's :func:`fine_core` pixels lie in cores that reach into another part.

    A cut at a neck of the mask (:func:`split_piece`) parts two items that touch at the mask's
    scale, or one item with a narrow waist (a dark band across a washing machine, a battery's
    cap). Two items 10 px apart keep a line of clean belt between them at full resolution,
    which parts their cores; one item's bright or coloured surface runs on through its
    waist. Dark parts of an item show no core, so they never hold a cut back."""
    fine = fine_core(piece, image, scale)
    if fine is None:
        return False
    cores = _part_cores(fine, piece, parts)
    return all(n_core > 0 and joined >= share * n_core for joined, n_core, _ in cores)


def parted(a: Piece, b: Piece, image: np.ndarray, scale: tuple[float, float], min_px: float, min_core: float,
           reach: int = 2, share: float = 0.5) -> bool:
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
    (x0, y0), closed = closed_union(a, b, reach)
    whole = piece_from_mask(None, closed, x0, y0)  # across the gap too
    if whole is None:
        return False
    fine = fine_core(whole, image, scale)
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

