"""Joining pieces of the item mask that are one item (the tracker's fragments and parts).

A dark item can fall apart into fragments; a piece may lie inside another's hull. Small new
pieces join the item they complete (:func:`join_fragments`), a followed piece inside a bigger
one is absorbed (:func:`absorb_inside`), and two tracked pieces that together fill a box are
parts of one item (:func:`parts_of_one_item`). All coordinates are px of the detector's
downscaled image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

from .segment import Piece, closed_union, pair_canvas, piece_from_mask, rect_fill
from .split import piece_length, split_touching

BOX_SHARE = 0.9  # a piece this much inside a bigger piece's box needs only half the hull share to join it


@dataclass(frozen=True, slots=True)
class JoinRules:
    """When new pieces join a piece next to them (:func:`join_fragments`); px of the working image."""

    gap: int  # pieces this close join when together they are one compact item
    neck_ratio: float  # a neck this much narrower than the parts beside it separates two items (split_touching)
    min_radius: float  # ... when the parts are at least this thick
    small: tuple[float, int] = (0.0, 0)  # a piece under small[0] px² may join over small[1] px (and box_join)
    box_join: tuple[int, float] | None = None  # (reach px, max loss of rectangle fill)
    item_join: tuple[int, float] | None = None  # (reach px, min gain of rectangle fill)
    max_length: float | None = None  # no join makes a piece longer than this


def join_fragments(new: list[Piece], others: list[Piece], rules: JoinRules,
                   apart: Callable[[Piece, Piece, int], bool] | None = None) -> tuple[list[Piece], dict[int, Piece]]:
    """Join new pieces that are fragments of an item next to them (an item with dark parts
    shows as several pieces; new items come in over the upstream edge, not beside others).
    The rules (:class:`JoinRules`):

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
    gap, neck_ratio, min_radius, small = rules.gap, rules.neck_ratio, rules.min_radius, rules.small
    box_join, item_join, max_length = rules.box_join, rules.item_join, rules.max_length
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
    _, (ma, mb) = pair_canvas(a, b, 0)
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
    u, (ma, mb) = pair_canvas(a, b, gap)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1, 2 * gap + 1))
    return bool((cv2.dilate(ma, k) & mb).any())


def _compact(a: Piece, b: Piece, gap: int, neck_ratio: float, min_radius: float) -> bool:
    _, closed = closed_union(a, b, gap)
    return len(split_touching(closed, neck_ratio, min_radius)) == 1


def union(a: Piece, b: Piece, key: int | None) -> Piece:
    """One piece of the pixels of both, under ``key``."""
    (x0, y0), (ma, mb) = pair_canvas(a, b, 0)
    out = piece_from_mask(key, ma | mb, x0, y0)
    assert out is not None
    return out

