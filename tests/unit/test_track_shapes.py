"""Shape rules of the tracker's cuts: how box-like the parts are (rect_fill), cutting a region
along its bright/coloured cores, and vetoing neck cuts that halve one item (synthetic masks)."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

from ewaste_stream.config import TrackerSection
from ewaste_stream.detect import FrameAnalysis
from ewaste_stream.join import JoinRules, join_fragments, parts_of_one_item
from ewaste_stream.segment import EMPTY, merge_footprint, parts_fill, piece_from_mask, rect_fill, rect_gain
from ewaste_stream.split import _median, split_by_core, split_piece
from ewaste_stream.track import CameraView

from test_track import FPS, H, W, _tracker


def _poly(points, shape=(90, 140)) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.array(points, np.int32)], 1)
    return m


def _rotated_box(cx, cy, w, h, angle, shape=(90, 140)) -> np.ndarray:
    return _poly(cv2.boxPoints(((cx, cy), (w, h), angle)), shape)


@pytest.mark.parametrize("angle", [0.0, 17.0, 45.0, 71.0])
def test_rect_fill_of_a_box_at_any_angle_is_near_one(angle):
    assert rect_fill(_rotated_box(70, 45, 60, 30, angle)) > 0.9


def test_rect_fill_of_a_disc_and_of_two_boxes_side_by_side():
    disc = np.zeros((90, 140), np.uint8)
    cv2.circle(disc, (70, 45), 30, 1, -1)
    assert rect_fill(disc) == pytest.approx(np.pi / 4, abs=0.05)
    two = _rotated_box(40, 45, 40, 30, 20) | _rotated_box(95, 35, 40, 30, -35)
    assert rect_fill(two) < 0.75
    assert rect_fill(np.zeros((5, 5), np.uint8)) == 0.0


def _piece(mask):
    p = piece_from_mask(None, mask, 0, 0)
    assert p is not None
    return p


def _box_cut_by_a_band(size, box, band, bridge) -> np.ndarray:
    """One box item (``box`` = y0, y1, x0, x1) that a dark band 7 px wide (``band``: its two end
    points) almost cuts in two; the ``bridge`` (y0, y1, x0, x1) across it is left, a neck."""
    m = np.zeros(size, np.uint8)
    m[box[0]:box[1], box[2]:box[3]] = 1
    cut = np.zeros_like(m)
    cv2.line(cut, band[0], band[1], 1, 7)
    cut[bridge[0]:bridge[1], bridge[2]:bridge[3]] = 0
    return m & (1 - cut)


def _diagonal_halves() -> np.ndarray:
    """A square cut along its diagonal into two triangles: split_touching cuts it at the neck."""
    return _box_cut_by_a_band((90, 140), (15, 75, 40, 100), ((40, 15), (99, 74)), (40, 50, 65, 75))


def _slanted_halves() -> np.ndarray:
    """A long box cut a little off square: the halves fill their rectangles 0.02 worse than the box."""
    return _box_cut_by_a_band((90, 160), (20, 70, 20, 140), ((75, 20), (85, 69)), (40, 50, 74, 86))


def _boxes_with_a_bridge() -> np.ndarray:
    """Two boxes side by side, joined by a thin bridge: two items."""
    m = np.zeros((90, 140), np.uint8)
    m[20:70, 10:60] = 1
    m[25:65, 66:116] = 1
    m[42:47, 60:66] = 1
    return m


@pytest.mark.parametrize("make,gain,parts", [
    (_diagonal_halves, None, 2),  # no veto: the neck cut halves the item
    (_diagonal_halves, -0.1, 1),  # the halves are triangles, much less box-like: not cut
    (_boxes_with_a_bridge, None, 2),
    (_boxes_with_a_bridge, -0.1, 2),  # the parts are boxes, more box-like than the pair: cut
    (_boxes_with_a_bridge, TrackerSection().split_min_rect_gain, 2),
    (_slanted_halves, -0.1, 2),  # the old default cut one box in two here
    (_slanted_halves, TrackerSection().split_min_rect_gain, 1),  # the default (0.0): whole
])
def test_split_piece_keeps_a_neck_cut_only_if_the_parts_are_no_less_box_like(make, gain, parts):
    m = make()
    out = split_piece(_piece(m), neck_ratio=0.6, min_radius=2.5, min_rect_gain=gain)
    assert len(out) == parts
    assert sum(p.area for p in out) == int(m.sum())


def _two_items_joined_by_a_dark_band():
    """Two boxes 6 px apart; the gap between them is darker than any one shadow (both their
    shadows fall there), so the mask joins them there; the core (brightness/colour) does not."""
    core = np.zeros((90, 140), np.uint8)
    core[20:70, 10:60] = 1
    core[30:60, 66:120] = 1
    mask = core.copy()
    mask[30:60, 60:66] = 1  # the dark gap: as wide as the smaller item, no neck to cut at
    return mask, core


def test_split_by_core_cuts_neighbours_joined_by_a_dark_gap():
    mask, core = _two_items_joined_by_a_dark_band()
    assert len(split_piece(_piece(mask), 0.6, 2.5, -0.1)) == 1  # no neck: the old cut keeps them together
    out = split_by_core(_piece(mask), core, min_px=100, min_radius=2.5, min_rect_gain=0.02)
    assert len(out) == 2
    assert sum(p.area for p in out) == int(mask.sum())
    left, right = sorted(out, key=lambda p: p.box[0])
    assert left.box[2] <= 64 and right.box[0] >= 62  # cut in the gap
    # a piece seen at an offset in the frame uses the core at that place
    big = np.zeros((120, 200), np.uint8)
    big[15:105, 30:170] = core
    assert len(split_by_core(piece_from_mask(None, mask, 30, 15), big, 100, 2.5, 0.02)) == 2


def test_split_by_core_cuts_a_box_from_a_round_neighbour():
    """A box and a round item (fills 0.79 of its rectangle) joined by the dark gap between
    them: the least box-like part alone is less box-like than the pair, but the two parts
    together fill their rectangles better than the pair fills its one."""
    core = np.zeros((100, 150), np.uint8)
    core[20:80, 10:60] = 1
    cv2.circle(core, (100, 50), 24, 1, -1)
    mask = core.copy()
    mask[35:65, 60:79] = 1  # the dark gap
    piece = _piece(mask)
    out = split_by_core(piece, core, min_px=100, min_radius=2.5, min_rect_gain=0.02)
    assert len(out) == 2
    assert rect_gain(piece, out) < 0.02 < parts_fill(out) - rect_fill(mask)  # the old test would have kept it whole
    left, right = sorted(out, key=lambda p: p.box[0])
    assert left.box[2] <= 80 and right.box[0] >= 60
    assert sum(p.area for p in out) == int(mask.sum())


@pytest.mark.parametrize("labels,parts", [
    ([(15, 30, 27, 42), (50, 30, 62, 42)], 1),  # two bright labels on a dark box: one item, its halves gain nothing
    ([(15, 30, 27, 42)], 1),  # one core
    ([(15, 30, 27, 42), (50, 30, 53, 33)], 1),  # the second core is too small to be an item
])
def test_split_by_core_leaves_one_item_with_bright_parts_whole(labels, parts):
    mask = np.zeros((90, 140), np.uint8)
    mask[20:55, 10:70] = 1  # a dark box
    core = np.zeros_like(mask)
    for x0, y0, x1, y1 in labels:
        core[y0:y1, x0:x1] = 1
    out = split_by_core(_piece(mask), core, min_px=60, min_radius=2.5, min_rect_gain=0.02)
    assert len(out) == parts


def _run_with_core(core_on: bool, gain: float | None = 0.02):
    """The two items of _two_items_joined_by_a_dark_band come in over the left edge together
    (the cut of regions longer than any item, new_max_length, is off: this is the core's test)."""
    mask0, core0 = _two_items_joined_by_a_dark_band()
    tr = _tracker(core_split_rect_gain=gain, new_max_length=None)
    seen, crossed = set(), 0
    for k in range(48):
        dx = -130 + 8 * k
        m, c = np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)
        xs = slice(max(0, dx), min(W, dx + 140))
        src = slice(xs.start - dx, xs.stop - dx)
        if xs.stop > xs.start:
            m[40:130, xs] = mask0[:, src]
            c[40:130, xs] = core0[:, src]
        an = FrameAnalysis("cam0", k, k / FPS, m, (1.0, 1.0), (8.0, 0.0) if k else None, 0.9 if k else 0.0,
                           core=c if core_on else None)
        st = tr.step(an)
        seen |= {t.id for t, _ in st.seen}
        crossed += len(st.crossed)
    return len(seen), crossed


def test_tracker_follows_neighbours_joined_by_a_dark_gap_as_two_items():
    assert _run_with_core(True) == (2, 2)
    assert _run_with_core(False) == (1, 1)  # without the core: one region, one item
    assert _run_with_core(True, gain=None) == (1, 1)  # rule off


def _box_piece(points, key=None):
    m = _poly(points, (120, 160))
    x, y, w, h = cv2.boundingRect(m)
    return piece_from_mask(key, m[y:y + h, x:x + w].copy(), x, y)


@pytest.mark.parametrize("frag,tracked,box_join,joined", [
    # the rest of the item's box, 4 px off its end (a dark band between): completes the box
    ([(84, 40), (98, 40), (98, 70), (84, 70)], False, (4, 0.08), True),
    ([(84, 40), (98, 40), (98, 70), (84, 70)], True, (4, 0.08), True),  # joins a tracked item too
    ([(84, 40), (98, 40), (98, 70), (84, 70)], False, None, False),  # rule off
    ([(84, 40), (98, 40), (98, 70), (84, 70)], False, (3, 0.08), False),  # beyond the reach
    # a small neighbour at another angle, as close: the pair fills its rectangle worse: apart
    ([(91, 38), (101, 48), (91, 58), (81, 48)], False, (4, 0.08), False),
    # a small neighbour beside the box's long side, sticking out: apart
    ([(40, 74), (52, 74), (52, 96), (40, 96)], False, (4, 0.08), False),
])
def test_small_fragment_that_completes_a_box_joins_it(frag, tracked, box_join, joined):
    body = _box_piece([(20, 40), (80, 40), (80, 70), (20, 70)], key=7 if tracked else None)
    piece = _box_piece(frag)
    new, others = ([piece], [body]) if tracked else ([body, piece], [])
    out, grown = join_fragments(new, others, JoinRules(gap=0, neck_ratio=0.6, min_radius=2.5, small=(500.0, 2),
                                                      box_join=box_join))
    if tracked:
        assert (7 in grown and not out) is joined
    else:
        assert (len(out) == 1) is joined
        assert sum(p.area for p in out) == body.area + piece.area


def _run_faint(faint_contrast: float, gap: int, iso: float | None = 1.4, reasons: Counter | None = None) -> set[int]:
    """A bright item (contrast 3) and, ``gap`` px above it, a faint one (``faint_contrast`` x the
    threshold, both 40 x 30 px, twice the min item area) ride the belt at 8 px a frame. Returns
    the rows (y centres) of the tracks that crossed the line; ``reasons`` counts why regions were left out."""
    from ewaste_stream.config import DetectorSection, TrackerSection
    from ewaste_stream.geometry import BeltMap
    from ewaste_stream.track import Tracker
    from test_track import LINE

    det = DetectorSection(min_area=600, min_area_frac=0.0)
    tr = Tracker(TrackerSection(isolated_min_contrast=iso), {"cam0": BeltMap.identity()}, line_u=LINE, detector=det)
    rows = set()
    for k in range(45):
        x = 4.0 + 8.0 * k
        mask = np.zeros((H, W), np.uint8)
        contrast = np.zeros((H, W), np.float32)
        for y0, c in ((100, 3.0), (100 - gap - 30, faint_contrast)):
            x0, x1 = int(max(0, x)), int(min(W, x + 40))
            if x1 > x0:
                mask[y0:y0 + 30, x0:x1] = 1
                contrast[y0:y0 + 30, x0:x1] = c
        an = FrameAnalysis("cam0", k, k / FPS, mask, (1.0, 1.0), (8.0, 0.0) if k else None, 0.9 if k else 0.0,
                           contrast=contrast)
        st = tr.step(an)
        rows |= {round(t.views["cam0"].centroid[1]) for t in st.crossed}
        if reasons is not None:
            reasons.update(why.value for _, why in st.ignored)
    return rows


@pytest.mark.parametrize("contrast,gap,iso,rows", [
    (1.45, 20, 1.4, {115, 115 - 50}),  # alone on the belt: a faint item (a dark one on a dark belt)
    (1.45, 3, 1.4, {115}),  # 3 px beside an item (rule's reach: 5 px): a dark part of that item
    (1.30, 20, 1.4, {115}),  # too faint even alone: a patch of the belt
    (1.45, 20, None, {115}),  # rule off
    (1.70, 3, 1.4, {115, 115 - 33}),  # not faint: an item wherever it is
])
def test_faint_region_alone_on_the_belt_is_an_item(contrast, gap, iso, rows):
    assert _run_faint(contrast, gap, iso) == rows


def test_alone_looks_only_around_the_piece():
    from ewaste_stream.segment import alone, occupancy
    a = _box_piece([(10, 10), (40, 10), (40, 40), (10, 40)])
    b = _box_piece([(46, 10), (70, 10), (70, 40), (46, 40)])  # 5 px of belt between them
    occ = occupancy((120, 160), [a, b])
    assert alone(a, occupancy((120, 160), [a]), 5)  # only itself
    assert not alone(a, occ, 6) and alone(a, occ, 4)


def _picture(boxes, dark=()):
    """Full-resolution BGR picture (320 x 240) of a plain grey belt with noise, bright boxes
    (x0, y0, x1, y1) and dark boxes drawn over them; and the detector's mask at 1/4 scale,
    where every box (and the 3 px gaps between them) is one region."""
    rng = np.random.default_rng(5)
    img = np.clip(50 + rng.normal(0, 3, (240, 320, 3)), 0, 255).astype(np.uint8)
    for x0, y0, x1, y1 in boxes:
        img[y0:y1, x0:x1] = 180
    for x0, y0, x1, y1 in dark:
        img[y0:y1, x0:x1] = 40
    mask = np.zeros((60, 80), np.uint8)
    for x0, y0, x1, y1 in list(boxes) + list(dark):
        mask[y0 // 4:(y1 + 3) // 4, x0 // 4:(x1 + 3) // 4] = 1
    return img, _piece(mask)


@pytest.mark.parametrize("boxes,dark,parts", [
    # two items one behind the other, 3 px of belt between them: one region at 1/4 scale
    ([(40, 60, 140, 140), (143, 100, 243, 180)], [], 2),
    # one item with a dark band across it: its halves are no more box-like than the whole
    ([(40, 80, 140, 160), (150, 80, 243, 160)], [(140, 80, 150, 160)], 1),
    # an item beside one whose two bright corners sit at opposite ends of its dark body: three
    # cores, but the cut that pays is two items, not the second one halved along its diagonal
    # (3 parts would be that halving, 1 no cut: only the grouping of the cores gives 2)
    ([(20, 20, 113, 110), (116, 90, 156, 130), (196, 170, 236, 210)], [(156, 90, 236, 170), (116, 130, 196, 210)], 2),
])
def test_split_by_fine_core_sees_the_gap_the_mask_does_not(boxes, dark, parts):
    from ewaste_stream.split import split_by_fine_core
    img, piece = _picture(boxes, dark)
    core = np.zeros((60, 80), np.uint8)
    core[piece.y0:piece.y0 + piece.mask.shape[0], piece.x0:piece.x0 + piece.mask.shape[1]] = piece.mask
    assert len(split_by_core(piece, core, 50, 2.0, 0.02)) == 1  # at 1/4 scale the cores touch
    out = split_by_fine_core(piece, img, (4.0, 4.0), 50, 2.0, 0.02)
    assert len(out) == parts
    assert sum(p.area for p in out) == piece.area


def _halves(band: int) -> tuple[np.ndarray, np.ndarray]:
    """A 80 x 30 px box cut by a slanted band ``band`` px wide: two trapezoids, each filling
    its own rectangle worse than the box did."""
    box = _poly([(10, 40), (90, 40), (90, 70), (10, 70)], (120, 160))
    cut = _poly([(42, 40), (42 + band, 40), (58 + band, 70), (58, 70)], (120, 160))
    rest = box & (1 - cut)
    n, labels = cv2.connectedComponents(rest)
    assert n == 3
    return (labels == 1).astype(np.uint8), (labels == 2).astype(np.uint8)


def _mask_piece(m, key=None):
    x, y, w, h = cv2.boundingRect(m)
    return piece_from_mask(key, m[y:y + h, x:x + w].copy(), x, y)


@pytest.mark.parametrize("case,tracked,item_join,joined", [
    ("halves", False, (3, 0.0), True),  # the two halves of one box, 2 px apart: one box
    ("halves", True, (3, 0.0), True),  # joins a tracked half too
    ("halves", False, None, False),  # rule off
    ("halves", False, (1, 0.0), False),  # beyond the reach
    ("halves", False, (3, 0.2), False),  # asks for more than the union gains
    ("turned", False, (3, 0.0), False),  # as big, as close, at another angle: fills its rectangle worse
    ("offset", False, (3, 0.0), False),  # as big, as close, offset across the belt: an L, not a box
])
def test_item_sized_pieces_that_make_one_box_join(case, tracked, item_join, joined):
    left, right = _halves(2)
    if case == "turned":
        right = _rotated_box(75, 55, 30, 28, 40, (120, 160)) & (1 - cv2.dilate(left, np.ones((3, 3), np.uint8)))
    elif case == "offset":
        right = np.roll(right, 18, axis=0)
    first, second = _mask_piece(left, key=7 if tracked else None), _mask_piece(right)
    assert max(rect_fill(left), rect_fill(right)) < 0.95  # each alone is no box
    new, others = ([second], [first]) if tracked else ([first, second], [])
    out, grown = join_fragments(new, others, JoinRules(gap=0, neck_ratio=0.6, min_radius=2.5, item_join=item_join))
    if tracked:
        assert (7 in grown and not out) is joined
    else:
        assert (len(out) == 1) is joined
        assert sum(p.area for p in out) == first.area + second.area


def _run_halves(item_join_near: float) -> int:
    """A dark item that a slanted dark band cuts into two halves 2 px apart (see ``_halves``)
    rides the belt at 8 px a frame; the detector finds it only once it is all in view (a dark
    item found late), so both halves are new in the same frame. The small-fragment join is off
    (``fragment_join_near`` 0): at this test's scale both halves are small enough for it, on the
    line's videos most such halves are not. Returns how many tracks crossed the line."""
    from ewaste_stream.config import DetectorSection, TrackerSection
    from ewaste_stream.geometry import BeltMap
    from ewaste_stream.track import Tracker
    from test_track import LINE

    left, right = _halves(2)
    item = (left | right)[38:73, 8:93]  # the 80 x 30 box with its band, and a margin
    det = DetectorSection(min_area=600, min_area_frac=0.0)
    # the item is 80 px long, 0.44 of the 180 px frame: longer than the default new_max_length
    cfg = TrackerSection(item_join_near=item_join_near, fragment_join_near=0.0, new_max_length=0.5)
    tr = Tracker(cfg, {"cam0": BeltMap.identity()}, line_u=LINE, detector=det)
    crossed = 0
    for k in range(45):
        x = -80 + 8 * k
        mask = np.zeros((H, W), np.uint8)
        x0, x1 = max(0, x), min(W, x + item.shape[1])
        if x1 > x0 and x >= 40:
            mask[70:70 + item.shape[0], x0:x1] = item[:, x0 - x:x1 - x]
        an = FrameAnalysis("cam0", k, k / FPS, mask, (1.0, 1.0), (8.0, 0.0) if k else None, 0.9 if k else 0.0)
        crossed += len(tr.step(an).crossed)
    return crossed


def test_tracker_follows_a_dark_item_cut_in_two_halves_as_one():
    assert _run_halves(3 / H) == 1
    assert _run_halves(0.0) == 2  # rule off: two items


def _disc_halves(r: int = 22, band: int = 2, shape=(120, 160)) -> tuple[np.ndarray, np.ndarray]:
    """A round dark item (radius ``r``) that a dark band ``band`` px wide cuts across its middle:
    two half discs. Each fills its rectangle as well as the whole disc does, so the box rule
    (``item_join``) does not join them."""
    disc = np.zeros(shape, np.uint8)
    cv2.circle(disc, (80, 60), r, 1, -1)
    disc[60 - band // 2:60 - band // 2 + band] = 0
    n, labels = cv2.connectedComponents(disc)
    assert n == 3
    return (labels == 1).astype(np.uint8), (labels == 2).astype(np.uint8)


@pytest.mark.parametrize("case,max_length,min_contact,pair", [
    ("halves", 50.0, 0.8, True),  # 44 px across, facing each other along the whole cut: one item
    ("halves", 40.0, 0.8, False),  # together longer than the longest item
    ("halves", 50.0, 6.0, False),  # asks for a longer cut than they share
    ("side by side", 100.0, 0.0, True),  # two discs 2 px apart fit a 100 px item ...
    ("side by side", 50.0, 0.0, False),  # ... not a 50 px one
    ("corners", 60.0, 0.8, False),  # two small boxes touching at a corner: too little contact
    ("corners", 60.0, 0.0, True),  # ... which is the only test that keeps them apart here
    ("far", 100.0, 0.0, False),  # 5 px apart: beyond the reach (3 px)
])
def test_parts_of_one_item(case, max_length, min_contact, pair):
    if case == "halves":
        a, b = _disc_halves()
    elif case in ("side by side", "far"):
        gap = 2 if case == "side by side" else 5
        a, b = np.zeros((120, 160), np.uint8), np.zeros((120, 160), np.uint8)
        cv2.circle(a, (40, 60), 22, 1, -1)
        cv2.circle(b, (40 + 44 + 1 + gap, 60), 22, 1, -1)
    else:
        a, b = np.zeros((120, 160), np.uint8), np.zeros((120, 160), np.uint8)
        a[20:40, 20:40] = 1
        b[41:61, 41:61] = 1
    pieces = [_mask_piece(a, key=4), _mask_piece(b, key=9), _mask_piece(np.roll(b, 80, axis=1))]  # a new piece: never
    assert parts_of_one_item(pieces, 3, max_length, min_contact) == ([(4, 9)] if pair else [])


def _run_disc_halves(bright: bool = False, **cfg) -> int:
    """A round dark item cut in two half discs 2 px apart (``_disc_halves``) rides the belt at 8 px a
    frame; it shows only once it is all in view, and neither the box rule nor the small-fragment
    join joins the halves, so the tracker follows them as two tracks at first. ``bright``: the
    frames come with a picture in which both halves are bright, with grey belt between them (two
    bright items, by the picture). Returns how many tracks crossed the line."""
    from ewaste_stream.config import DetectorSection, TrackerSection
    from ewaste_stream.geometry import BeltMap
    from ewaste_stream.track import Tracker
    from test_track import LINE

    top, bottom = _disc_halves()
    item = (top | bottom)[36:85, 56:105]
    det = DetectorSection(min_area=600, min_area_frac=0.0)
    tr = Tracker(TrackerSection(fragment_join_near=0.0, **cfg), {"cam0": BeltMap.identity()}, line_u=LINE, detector=det)
    crossed = 0
    for k in range(45):
        x = -50 + 8 * k
        mask = np.zeros((H, W), np.uint8)
        if x >= 40 and x + item.shape[1] <= W:
            mask[60:60 + item.shape[0], x:x + item.shape[1]] = item
        image = np.where(mask[..., None] > 0, 200, 60).astype(np.uint8).repeat(3, axis=2) if bright else None
        an = FrameAnalysis("cam0", k, k / FPS, mask, (1.0, 1.0), (8.0, 0.0) if k else None, 0.9 if k else 0.0,
                           image=image)
        crossed += len(tr.step(an).crossed)
    return crossed


@pytest.mark.parametrize("cfg,crossed", [
    ({}, 1),  # the defaults: 50 px at 180 px high, 3 frames
    ({"part_join_max_length": None}, 2),  # rule off: two items
    ({"part_join_max_length": 0.2}, 2),  # 36 px: shorter than the item
    ({"part_join_frames": 30}, 2),  # seen together too few frames before the line
    ({"bright": True}, 2),  # two bright halves with belt between them: two items by the picture (parted)
    ({"bright": True, "parted_min_core": None}, 1),  # ... a test that is off here
])
def test_tracker_joins_two_tracked_parts_of_one_item(cfg, crossed):
    assert _run_disc_halves(**cfg) == crossed


@pytest.mark.parametrize("past_line, joined", [
    ((False, False), True),
    ((True, True), True),
    ((True, False), False),  # the older was first seen past the line (never decided): it must not take the other
    ((False, True), False),
])
def test_part_join_never_hands_a_track_to_one_that_will_not_be_decided(past_line, joined):
    from ewaste_stream.track import Track

    tr = _tracker()
    top, bottom = _disc_halves()
    pieces = [_mask_piece(top, key=1), _mask_piece(bottom, key=2)]
    for key, past in zip((1, 2), past_line):
        tr.tracks[key] = Track(key, t_first=0.0, t_last=0.0, u=0.0, v=0.0, box=(0.0, 0.0, 1.0, 1.0), born_past_line=past)
    an = FrameAnalysis("cam0", 0, 0.0, np.zeros((H, W), np.uint8), (1.0, 1.0), None, 0.0)
    cam = tr._camera(an)
    merged = [tr._join_parts(pieces, cam, None, tr._locked())[1] for _ in range(3)]  # part_join_frames: 3
    assert merged == [[], [], [(2, 1)] if joined else []]
    assert (2 in tr.tracks) is not joined


def _run_small(h: int, w: int, contrast: float, gap: int, frames: range = range(45), reasons: Counter | None = None,
               **cfg) -> set[int]:
    """A bright item (40 x 30 px, twice the min item area of 600 px) and, ``gap`` px above it, a
    region of ``h`` x ``w`` px at ``contrast`` x the threshold, in the mask only in ``frames``,
    ride the belt at 8 px a frame. Returns the rows (y centres) of the tracks to be decided: those
    that crossed the line, and those lost before it once confirmed."""
    from ewaste_stream.config import DetectorSection, TrackerSection
    from ewaste_stream.geometry import BeltMap
    from ewaste_stream.track import Tracker
    from test_track import LINE

    det = DetectorSection(min_area=600, min_area_frac=0.0)
    tr = Tracker(TrackerSection(**cfg), {"cam0": BeltMap.identity()}, line_u=LINE, detector=det)
    rows = set()
    for k in range(45):
        x = 4.0 + 8.0 * k
        mask = np.zeros((H, W), np.uint8)
        con = np.zeros((H, W), np.float32)
        for y0, hh, ww, c in ((100, 30, 40, 3.0), (100 - gap - h, h, w, contrast)):
            x0, x1 = int(max(0, x)), int(min(W, x + ww))
            if x1 > x0 and (c == 3.0 and hh == 30 or k in frames):
                mask[y0:y0 + hh, x0:x1] = 1
                con[y0:y0 + hh, x0:x1] = c
        an = FrameAnalysis("cam0", k, k / FPS, mask, (1.0, 1.0), (8.0, 0.0) if k else None, 0.9 if k else 0.0,
                           contrast=con)
        st = tr.step(an)
        rows |= {round(t.views["cam0"].centroid[1]) for t in st.crossed + st.lost}
        if reasons is not None:
            reasons.update(why.value for _, why in st.ignored)
    return rows


@pytest.mark.parametrize("h,w,contrast,gap,frames,cfg,rows", [
    (15, 20, 3.0, 20, range(45), {}, {115, 72}),  # half the min item area, clear, alone: a small item
    (15, 20, 3.0, 3, range(45), {}, {115}),  # 3 px from an item (rule's reach: 5 px): a part of that item
    (15, 20, 1.4, 20, range(45), {}, {115}),  # barely off the belt: a patch of it
    (10, 20, 3.0, 20, range(45), {}, {115}),  # a third of the min item area: a fragment
    (15, 20, 3.0, 20, range(45), {"small_item_area": None}, {115}),  # rule off
    (15, 20, 3.0, 20, range(5, 15), {}, {115}),  # in the mask for 10 frames only: never confirmed (12)
    (15, 20, 3.0, 20, range(5, 15), {"small_item_hits": 8}, {115, 72}),  # with 8: confirmed, then lost
])
def test_small_clear_region_alone_on_the_belt_is_an_item(h, w, contrast, gap, frames, cfg, rows):
    assert _run_small(h, w, contrast, gap, frames, **cfg) == rows


@pytest.mark.parametrize("run,why", [
    (lambda r: _run_faint(1.45, 3, reasons=r), "faint_crowded"),  # faint, beside an item
    (lambda r: _run_faint(1.30, 20, reasons=r), "faint"),  # too faint even alone
    (lambda r: _run_faint(1.45, 20, reasons=r), None),  # tracked: a faint item alone
    (lambda r: _run_small(15, 20, 3.0, 3, reasons=r), "small_crowded"),
    (lambda r: _run_small(15, 20, 1.4, 20, reasons=r), "small_faint"),
    (lambda r: _run_small(10, 20, 3.0, 20, reasons=r), "fragment"),
    (lambda r: _run_small(15, 50, 3.0, 20, reasons=r, min_item_radius=0.05), "thin"),  # 15 px thick, 18 the least
])
def test_the_tracker_says_why_it_left_a_region_out(run, why):
    """``TrackStep.ignored``: what ``replay --annotate`` draws and ``--ignored-log`` writes. While in
    view the region is left out every frame for that reason (leaving the picture, what is left of it
    is smaller: a fragment or a small region)."""
    reasons: Counter = Counter()
    run(reasons)
    if why is None:
        assert not reasons
    else:
        assert reasons.most_common(1)[0][0] == why and reasons[why] >= 25


def test_a_region_bigger_than_any_item_is_left_out_as_too_big():
    from ewaste_stream.config import DetectorSection, TrackerSection
    from ewaste_stream.geometry import BeltMap
    from ewaste_stream.track import Ignored, Tracker

    det = DetectorSection(min_area=600, min_area_frac=0.0, max_area=5000)
    tr = Tracker(TrackerSection(new_max_length=None), {"cam0": BeltMap.identity()}, detector=det)
    mask = np.zeros((H, W), np.uint8)
    mask[40:120, 100:200] = 1  # 8000 px (with new_max_length, cut across: longer than any item)
    st = tr.step(FrameAnalysis("cam0", 0, 0.0, mask, (1.0, 1.0), None, 0.0, contrast=mask.astype(np.float32) * 3))
    assert st.ignored == [((100.0, 40.0, 200.0, 120.0), Ignored.TOO_BIG)] and not st.seen


@pytest.mark.parametrize("n", [1, 2, 7, 64, 1001])
def test_fast_median_is_numpys(n):
    rng = np.random.default_rng(n)
    for a in ((rng.normal(size=n) * 40).astype(np.float32), np.round(rng.normal(size=n) * 3).astype(np.float32)):
        got = _median(a)
        assert got == np.median(a) and got.dtype == np.float32


def test_footprint_ages_forgets_and_stamps_the_new_piece():
    age = np.full((4, 6), EMPTY, np.uint8)
    age[:, :2] = 2  # oldest pixels: forgotten when keep is 2
    age[:, 2:4] = 0
    view = CameraView("cam0", 10, 20, age, (age != EMPTY).astype(np.uint8), 0, 0.0, (0, 0, 1, 1), (0.0, 0.0), 1.0,
                      False, 0)
    mask = np.ones((4, 3), np.uint8)
    merge_footprint(view, piece_from_mask(None, mask, 14, 20), keep=2)
    assert (view.x0, view.y0) == (12, 20)  # the two forgotten columns are cut off
    assert view.age.tolist() == [[1, 1, 0, 0, 0]] * 4
    assert view.footprint.tolist() == [[1] * 5] * 4
    merge_footprint(view, piece_from_mask(None, mask, 16, 20), keep=1)  # age 1 -> 2 > keep: gone
    assert (view.x0, view.age.tolist()) == (14, [[1, 1, 0, 0, 0]] * 4)


def _dumbbell(bar_in_picture: bool, shade: int = 180):
    """Two 80 x 80 px boxes 40 px apart joined by a 16 px thick bar: at 1/4 scale one region
    with a neck, which :func:`split_piece` cuts. With ``bar_in_picture`` the bar is part of the
    item (one item with a waist); without it, only the mask joins the boxes (two neighbours
    blurred together) and the picture shows belt between them. ``shade``: the item's grey."""
    rng = np.random.default_rng(7)
    img = np.clip(50 + rng.normal(0, 3, (240, 320, 3)), 0, 255).astype(np.uint8)
    parts = [(40, 60, 120, 140), (160, 60, 240, 140)]
    bar = (120, 92, 160, 108)
    for x0, y0, x1, y1 in parts + ([bar] if bar_in_picture else []):
        img[y0:y1, x0:x1] = shade
    mask = np.zeros((60, 80), np.uint8)
    for x0, y0, x1, y1 in parts + [bar]:
        mask[y0 // 4:y1 // 4, x0 // 4:x1 // 4] = 1
    return img, _piece(mask)


@pytest.mark.parametrize("bar_in_picture,shade,whole", [
    (True, 180, True),  # a bright item with a waist: its surface runs on through the neck
    (False, 180, False),  # two bright neighbours: clean belt between them at full resolution
    (True, 40, False),  # a dark item shows no bright or coloured core at all: it never holds a cut back
])
def test_bridged_tells_a_waist_from_two_neighbours(bar_in_picture, shade, whole):
    from ewaste_stream.split import bridged
    img, piece = _dumbbell(bar_in_picture, shade)
    parts = split_piece(piece, 0.6, 2.0, 0.0)
    assert len(parts) == 2  # the mask alone cannot tell: both are cut at the neck
    assert bridged(piece, parts, img, (4.0, 4.0), 0.5) is whole


def test_the_tracker_keeps_an_item_with_a_waist_whole_and_parts_neighbours():
    seen = {}
    for bar_in_picture in (True, False):
        img, piece = _dumbbell(bar_in_picture)
        tr = _tracker(neck_cut_max_bridge=0.5)
        an = FrameAnalysis(camera="cam0", frame_seq=0, t=0.0, mask=np.zeros((60, 80), np.uint8), scale=(4.0, 4.0),
                           shift=None, shift_confidence=0.0, image=img)
        cam = tr._camera(an)
        seen[bar_in_picture] = len(tr._cut_at_necks(piece, an, cam, 2.0))
        off = _tracker(neck_cut_max_bridge=None)
        assert len(off._cut_at_necks(piece, an, off._camera(an), 2.0)) == 2  # None: every neck cut stands
    assert seen == {True: 1, False: 2}


def _side_by_side(between: str):
    """A 80 x 80 px bright box and a 40 x 40 px one 10 px beside it, along its side; at 1/4
    scale their masks come within a pixel (blur), one region but for that pixel, with no neck
    to cut. ``between``: "belt" (two items), "bright" (one item: its surface runs on across the
    gap) or "dark" (the small one is a dark piece)."""
    rng = np.random.default_rng(3)
    img = np.clip(50 + rng.normal(0, 3, (240, 320, 3)), 0, 255).astype(np.uint8)
    img[60:140, 40:120] = 180
    img[80:120, 130:170] = 40 if between == "dark" else 180
    if between == "bright":
        img[80:120, 120:130] = 180
    big, small = np.zeros((60, 80), np.uint8), np.zeros((60, 80), np.uint8)
    big[15:35, 10:30] = 1
    small[20:30, 31:42] = 1
    return img, _piece(big), _piece(small)


@pytest.mark.parametrize("between,apart", [("belt", True), ("bright", False), ("dark", False)])
def test_parted_tells_two_bright_items_from_one(between, apart):
    from ewaste_stream.split import parted
    img, big, small = _side_by_side(between)
    assert parted(small, big, img, (4.0, 4.0), 92, 0.3) is apart
    assert parted(small, big, img, (4.0, 4.0), 120, 0.3) is False  # the small one is under the min item size
    if apart:
        assert parted(small, big, img, (4.0, 4.0), 92, 0.99) is False  # not that much of it is bright


def test_a_parted_neighbour_is_not_joined_for_being_near():
    from ewaste_stream.split import parted
    img, big, small = _side_by_side("belt")
    joined, _ = join_fragments([big, small], [], JoinRules(0, 0.6, 2.0, small=(368, 2)))
    assert len(joined) == 1  # the nearness rule alone joins them: together they have no neck
    kept, _ = join_fragments([big, small], [], JoinRules(0, 0.6, 2.0, small=(368, 2)),
                             apart=lambda a, b, gap: parted(a, b, img, (4.0, 4.0), 92, 0.3, gap))
    assert sorted(p.area for p in kept) == sorted((big.area, small.area))
    img, big, small = _side_by_side("bright")
    one, _ = join_fragments([big, small], [], JoinRules(0, 0.6, 2.0, small=(368, 2)),
                            apart=lambda a, b, gap: parted(a, b, img, (4.0, 4.0), 92, 0.3, gap))
    assert len(one) == 1


def test_the_tracker_asks_parted_only_with_the_picture_and_the_setting_on():
    img, big, small = _side_by_side("belt")
    an = FrameAnalysis(camera="cam0", frame_seq=0, t=0.0, mask=np.zeros((60, 80), np.uint8), scale=(4.0, 4.0),
                       shift=None, shift_confidence=0.0, image=img)
    tr = _tracker(parted_min_core=0.3)
    apart = tr._apart(an, tr._camera(an), 92)
    assert apart is not None and apart(small, big, 2)
    off = _tracker(parted_min_core=None)
    assert off._apart(an, off._camera(an), 92) is None
    blind = FrameAnalysis(camera="cam0", frame_seq=0, t=0.0, mask=an.mask, scale=(4.0, 4.0), shift=None,
                          shift_confidence=0.0)
    assert tr._apart(blind, tr._camera(blind), 92) is None


def _row_of_items(*boxes) -> np.ndarray:
    """Boxes (x0, y0, x1, y1) painted into one mask, each joined to the next along the belt as
    the motion blur joins two items lying one behind the other (no gap, no neck)."""
    m = np.zeros((H, W), np.uint8)
    for x0, y0, x1, y1 in boxes:
        m[y0:y1, x0:x1] = 1
    return m


@pytest.mark.parametrize("boxes, max_length, widths", [
    # two items in a row, together 100 px: cut where they meet (the narrower one's end)
    (((20, 60, 70, 110), (70, 70, 120, 100)), 80, [50, 50]),
    # two of the same height (no waist at all): cut within the middle of the length
    (((20, 60, 70, 100), (70, 60, 130, 100)), 80, None),
    # three in a row, 150 px: three parts
    (((20, 60, 70, 110), (70, 70, 120, 100), (120, 55, 170, 105)), 80, [50, 50, 50]),
    # one long item within the length: whole
    (((20, 60, 95, 100),), 80, [75]),
    # a thin streak beyond the length: its parts would be under the min px, it stays whole
    (((20, 60, 140, 66),), 80, [120]),
])
def test_cut_too_long(boxes, max_length, widths):
    from ewaste_stream.split import cut_too_long, piece_length

    m = _row_of_items(*boxes)
    parts = cut_too_long(piece_from_mask(None, m, 0, 0), max_length, min_px=600)
    assert sum(p.area for p in parts) == int(m.sum())  # every px in one part
    assert all(piece_length(p) <= max_length for p in parts) or len(parts) == 1
    if widths is None:
        assert len(parts) == 2 and all(0.3 * 110 - 2 <= p.mask.shape[1] <= 0.7 * 110 + 2 for p in parts)
    else:
        assert len(parts) == len(widths)
        # the profile is smoothed over 3 px: a cut may land a few px off the corner
        assert all(abs(a - b) <= 4 for a, b in zip(sorted(p.mask.shape[1] for p in parts), sorted(widths)))


def test_no_join_makes_a_piece_longer_than_the_longest_item():
    """Two new pieces touching end to end, no neck between them, join (one item cut by a dark
    band) unless together they are longer than max_length."""
    a = piece_from_mask(None, _row_of_items((20, 60, 70, 100)), 0, 0)
    b = piece_from_mask(None, _row_of_items((72, 60, 122, 100)), 0, 0)
    joined, _ = join_fragments([a, b], [], JoinRules(gap=3, neck_ratio=0.6, min_radius=2.5))
    assert len(joined) == 1
    apart, _ = join_fragments([a, b], [], JoinRules(gap=3, neck_ratio=0.6, min_radius=2.5, max_length=90))
    assert len(apart) == 2
    again, _ = join_fragments([a, b], [], JoinRules(gap=3, neck_ratio=0.6, min_radius=2.5, max_length=110))
    assert len(again) == 1


def _run_row(**cfg) -> int:
    """Two items lying one behind the other, their gap closed (one region from the start), ride
    the belt at 8 px a frame past the line. Returns the tracks that crossed it."""
    from ewaste_stream.config import DetectorSection
    from ewaste_stream.geometry import BeltMap
    from ewaste_stream.track import Tracker
    from test_track import LINE

    row = _row_of_items((0, 60, 50, 110), (50, 70, 95, 100))[:, :95]
    det = DetectorSection(min_area=600, min_area_frac=0.0)
    tr = Tracker(TrackerSection(**cfg), {"cam0": BeltMap.identity()}, line_u=LINE, detector=det)
    crossed = 0
    for k in range(45):
        x = -100 + 8 * k
        mask = np.zeros((H, W), np.uint8)
        a, b = max(0, x), min(W, x + row.shape[1])
        if b > a:
            mask[:, a:b] = row[:, a - x:b - x]
        an = FrameAnalysis("cam0", k, k / FPS, mask, (1.0, 1.0), (8.0, 0.0) if k else None, 0.9 if k else 0.0)
        crossed += len(tr.step(an).crossed)
    return crossed


@pytest.mark.parametrize("cfg, crossed", [
    ({"new_max_length": None}, 1),  # off: one item
    ({}, 2),  # the default, 0.37: 67 px at 180 px high; the 95 px region is two items
    ({"new_max_length": 0.45}, 2),  # 81 px
    ({"new_max_length": 0.6}, 1),  # 108 px: as long as one item may be
])
def test_tracker_cuts_a_new_region_longer_than_any_item(cfg, crossed):
    assert _run_row(**cfg) == crossed
