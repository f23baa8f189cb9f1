"""Tracker (footprints + belt kinematics) and track-guided segmentation, on synthetic masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ewaste_stream.config import DetectorSection, TrackerSection
from ewaste_stream.detect import FrameAnalysis
from ewaste_stream.geometry import BeltMap
from ewaste_stream.join import absorb_inside
from ewaste_stream.segment import Piece, Prior, piece_from_mask, segment
from ewaste_stream.split import split_touching
from ewaste_stream.track import Tracker, TrackState

W, H = 320, 180  # working resolution = full resolution (scale 1) in these tests
FPS = 60.0
LINE = 0.75 * W


def _mask(rects) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    for x0, y0, x1, y1 in rects:
        x0, x1 = int(round(max(0, x0))), int(round(min(W, x1)))
        if x1 > x0:
            m[int(y0):int(y1), x0:x1] = 1
    return m


def _an(k: int, rects, shift, camera: str = "cam0") -> FrameAnalysis:
    return FrameAnalysis(camera, k, k / FPS, _mask(rects), (1.0, 1.0), shift, 0.9 if shift else 0.0)


def _tracker(**kw) -> Tracker:
    det = DetectorSection(min_area=40, min_area_frac=0.0)
    cfg = TrackerSection(**kw)
    return Tracker(cfg, {"cam0": BeltMap.identity()}, line_u=LINE, detector=det)


def _run(items, speeds, tracker=None, start=0):
    """items: (x0 at frame 0, y0, w, h); the belt moves speeds[k] px before frame k."""
    tr = tracker or _tracker()
    pos = 0.0
    steps = []
    for k, v in enumerate(speeds):
        pos += v if k else 0.0
        rects = [(x + pos, y, x + pos + w, y + h) for x, y, w, h in items]
        steps.append(tr.step(_an(start + k, rects, (v, 0.0) if k else None)))
    return tr, steps


def _ids_over_time(steps):
    return [sorted((round(v.centroid[1]), t.id) for t, v in s.seen) for s in steps]


def test_one_item_one_track_crossing_time_interpolated():
    tr, steps = _run([(-60.0, 60, 40, 30)], [7.0] * 50)
    crossed = [t for s in steps for t in s.crossed]
    assert len(crossed) == 1 and tr.created == 1
    t = crossed[0]
    assert t.state == TrackState.CONFIRMED
    # centroid x = -60 + 20 + 7k = LINE -> k = (240 - -40) / 7 = 40
    assert t.t_cross == pytest.approx(40 / FPS, abs=0.25 / FPS)


@pytest.mark.parametrize("speeds", [
    [6.0] * 20 + [40.0] * 20,  # speeds up 6x
    [30.0] * 10 + [3.0] * 40,  # slows down 10x
    [0.0] * 10 + [12.0] * 30,  # starts from standstill
    [60.0] * 12,  # fast: 60 px/frame (each item seen a few times)
])
def test_speed_changes_keep_identities(speeds):
    items = [(-260.0, 30, 50, 40), (-200.0, 100, 60, 35), (-120.0, 60, 45, 45)]
    tr, steps = _run(items, speeds)
    assert tr.created == 3
    assert len({t.id for s in steps for t, _ in s.seen}) == 3


@pytest.mark.parametrize("measured", [True, False])
def test_a_burst_of_dropped_frames_keeps_identities(measured):
    """A live camera's queue drops frames while the pipeline is behind. After a gap of 7 frame
    periods the belt has moved 7 x 20 = 140 px, over ``max_speed_px`` (120) for one period: the
    limit counts the periods that passed, and with no usable measurement the tracks move by the
    last belt speed times the time that passed (not by one frame's shift)."""
    items = [(-260.0, 30, 50, 40), (-200.0, 100, 60, 35), (-120.0, 60, 45, 45)]
    v, kept = 20.0, [*range(0, 12), *range(19, 45)]
    tr, steps, prev = _tracker(), [], None
    for k in kept:
        rects = [(x + v * k, y, x + v * k + w, y + h) for x, y, w, h in items]
        shift = None if prev is None or (not measured and k - prev > 1) else ((k - prev) * v, 0.0)
        steps.append(tr.step(_an(k, rects, shift)))
        prev = k
    assert tr.created == 3
    assert len({t.id for s in steps for t, _ in s.seen}) == 3
    assert sorted(t.id for s in steps for t in s.crossed) == [1, 2, 3]
    assert tr.velocity == pytest.approx(v * FPS)


def test_neighbours_that_grow_together_keep_their_ids():
    """Two items 3 px apart; from frame 20 on the detector sees both 2 px too large, so they
    form one region: the tracker keeps them apart and never swaps them."""
    tr = _tracker()
    steps = []
    for k in range(40):
        g = 2 if k >= 20 else 0
        rects = [(x - g, y - g, x + w + g, y + h + g) for x, y, w, h in
                 ((-70.0 + 10 * k, 40, 50, 50), (-133.0 + 10 * k, 40, 60, 50))]
        steps.append(tr.step(_an(k, rects, (10.0, 0.0) if k else None)))
    assert tr.created == 2
    for s in steps[20:]:
        by_id = {t.id: v for t, v in s.seen}
        assert len(by_id) == 2
        (id_up, v_up), (id_down, v_down) = sorted(by_id.items(), key=lambda kv: kv[1].centroid[0])
        assert id_down < id_up  # the first to come in stays the downstream one
        assert v_down.bbox[0] >= v_up.bbox[2] - 3  # their pieces stay apart


def test_items_that_come_in_touching_at_a_corner_are_two_tracks():
    b = (-70.0, 40, 50, 50)
    a = (-130.0, 86, 60, 40)  # behind b and lower: they touch along 4 px only
    tr, steps = _run([a, b], [10.0] * 30)
    assert tr.created == 2


def test_item_not_followed_until_fully_in_view_then_closed_after_leaving():
    tr, steps = _run([(-40.0, 60, 40, 30)], [10.0] * 45)
    first_seen = next(k for k, s in enumerate(steps) if s.seen)
    assert first_seen >= 4  # x0 = -40 + 10k > 0 from k = 5 (touching the edge until then)
    closed = [t for s in steps for t in s.closed]
    tr.mark_decided(next(t for s in steps for t in s.crossed))
    _, more = _run([(-40.0 + 450, 60, 40, 30)], [10.0] * 15, tracker=tr, start=45)
    assert closed or any(s.closed for s in more)


def test_decided_item_coasts_with_the_belt_until_it_leaves_and_is_not_found_again():
    """Past the line a decided item is no longer segmented: its footprint moves with the belt,
    claims its pixels (also when its outline wobbles a little) and is closed once it is out of view."""
    tr = _tracker()
    x, pos, decided_at, closed, boxes = -40.0, 0.0, None, [], []
    for k in range(60):
        pos += 8.0 if k else 0.0
        grow = 2 if k % 2 else 0  # the detector's outline of the item wobbles by 2 px
        step = tr.step(_an(k, [(x + pos - grow, 60 - grow, x + pos + 40 + grow, 90 + grow)], (8.0, 0.0) if k else None))
        for t in step.crossed:
            tr.mark_decided(t)
            decided_at = k
        if decided_at is not None and k > decided_at:
            boxes.append((k, [v.bbox for t, v in step.seen if t.state == TrackState.DECIDED]))
        closed += step.closed
    assert decided_at is not None
    assert tr.created == 1  # never found again as a new item
    inside = [(k, b) for k, b in boxes if x + 8.0 * k < W]  # its left edge still in the picture
    assert inside and all(len(b) == 1 for _, b in inside)
    k0, (b0,) = inside[0]
    for k, (b,) in inside:  # followed by the belt's motion alone: its box moves 8 px a frame
        assert b[0] == pytest.approx(b0[0] + 8.0 * (k - k0))
    assert [t.id for t in closed] == [1]


def test_lost_track_reported_once():
    tr = _tracker(max_missed_frames=3)
    steps = []
    for k in range(30):
        x = 20 + 5 * k
        rects = [(x, 50, x + 40, 90)] if k < 15 else []
        steps.append(tr.step(_an(k, rects, (5.0, 0.0) if k else None)))
    lost = [t for s in steps for t in s.lost]
    assert len(lost) == 1 and lost[0].lost and lost[0].t_cross is None


def test_two_cameras_same_belt_one_track_with_two_views():
    det = DetectorSection(min_area=40, min_area_frac=0.0)
    tr = Tracker(TrackerSection(), {"cam0": BeltMap.identity(), "cam1": BeltMap.identity()}, LINE, det)
    for k in range(40):
        x = -50 + 8 * k
        rects = [(x, 70, x + 40, 100)]
        for cam in ("cam0", "cam1"):
            tr.step(_an(k, rects, (8.0, 0.0) if k else None, camera=cam))
    assert tr.created == 1
    (track,) = tr.tracks.values()
    assert set(track.views) == {"cam0", "cam1"}


def test_segment_cuts_merged_region_along_footprints():
    fg = _mask([(10, 10, 40, 40), (41, 10, 80, 40)])  # two items touching: one region
    priors = [Prior(1, 10, 10, np.ones((30, 30), np.uint8)), Prior(2, 41, 10, np.ones((30, 39), np.uint8))]
    pieces = {p.key: p for p in segment(fg, priors, slack=2, min_new_px=50)}
    assert set(pieces) == {1, 2}
    assert pieces[1].area == 900 and pieces[2].area == 30 * 39


def test_segment_new_item_touching_tracked_one_is_separate():
    fg = _mask([(10, 10, 40, 40), (40, 10, 80, 40)])
    pieces = segment(fg, [Prior(1, 10, 10, np.ones((30, 30), np.uint8))], slack=2, min_new_px=50)
    new = [p for p in pieces if p.key is None]
    assert len(new) == 1 and new[0].box[0] >= 40


def _draw(shapes) -> np.ndarray:
    m = np.zeros((70, 120), np.uint8)
    for kind, args in shapes:
        if kind == "rect":
            cv2.rectangle(m, *args, 1, -1)
        elif kind == "circle":
            cv2.circle(m, *args, 1, -1)
        else:
            cv2.fillPoly(m, [np.array(args, np.int32)], 1)
    return m


@pytest.mark.parametrize("shapes,parts", [
    ([("rect", ((5, 5), (80, 50)))], 1),  # one box
    ([("rect", ((5, 5), (80, 20))), ("rect", ((5, 5), (20, 60)))], 1),  # an L-shaped item
    ([("rect", ((5, 5), (110, 15)))], 1),  # long thin item
    ([("rect", ((5, 5), (35, 35))), ("rect", ((36, 20), (80, 60)))], 2),  # boxes touching at a corner region
    ([("circle", ((20, 30), 15)), ("circle", ((48, 30), 14))], 2),  # round items touching
    ([("poly", [(10, 30), (30, 10), (50, 30), (30, 50)]), ("poly", [(50, 30), (70, 10), (90, 30), (70, 50)])], 2),
])
def test_split_touching(shapes, parts):
    m = _draw(shapes)
    out = split_touching(m, neck_ratio=0.6, min_radius=2.5)
    assert len(out) == parts
    assert sum(int(p.sum()) for p in out) == int(m.sum())


def test_piece_box():
    p = Piece(None, 3, 4, np.ones((5, 6), np.uint8), 30, (5.5, 6.0))
    assert p.box == (3, 4, 9, 9)


def test_fragment_seen_by_one_camera_only_joins_the_item_the_other_camera_sees_whole():
    det = DetectorSection(min_area=40, min_area_frac=0.0)
    tr = Tracker(TrackerSection(), {"cam0": BeltMap.identity(), "cam1": BeltMap.identity()}, LINE, det)
    merged = []
    for k in range(30):
        x = -70 + 8 * k
        whole = [(x, 70, x + 60, 110)]
        split = [(x, 70, x + 12, 110), (x + 16, 70, x + 60, 110)]  # a dark band hides 4 px of it
        for cam, rects in (("cam0", whole), ("cam1", split)):
            merged += tr.step(_an(k, rects, (8.0, 0.0) if k else None, camera=cam)).merged
    live = [t for t in tr.tracks.values()]
    assert len(live) == 1 and set(live[0].views) == {"cam0", "cam1"}
    assert tr.created - len(merged) == 1


def test_fragment_tracked_before_its_item_is_in_view_joins_it():
    """A dark item with a bright rim and a bright middle: the middle is in view (and tracked)
    while the rim still touches the picture's edge; once the rim is all in view, it joins the
    middle's track instead of becoming a second track (a duplicate decision)."""
    x, y, s, t = -70, 60, 48, 6
    ring = [(x, y, s, t), (x, y + s - t, s, t), (x, y, t, s), (x + s - t, y, t, s)]
    _, steps = _run(ring + [(x + 17, y + 17, 14, 14)], [8.0] * 45)
    assert len({tr.id for st in steps for tr, _ in st.seen}) == 1
    assert len([tr for st in steps for tr in st.crossed]) == 1


def _piece(key, rects, locked=False):
    m = np.zeros((80, 120), np.uint8)
    for kind, args in rects:
        if kind == "rect":
            cv2.rectangle(m, *args, 1, -1)
        else:
            cv2.fillPoly(m, [np.array(args, np.int32)], 1)
    return piece_from_mask(key, m, 0, 0)


_RING = ("poly", [(10, 10), (70, 10), (70, 70), (10, 70), (10, 16), (64, 16), (64, 64), (16, 64), (16, 16), (10, 16)])
_MIDDLE = ("rect", ((30, 30), (45, 45)))
_BESIDE = ("rect", ((80, 10), (110, 70)))


@pytest.mark.parametrize("keys,locked,left,merged", [
    ((None, None), set(), [None], []),  # both new: one new piece
    ((None, 7), set(), [7], []),  # the middle is tracked: the new rim takes its track
    ((3, 7), set(), [3], [(7, 3)]),  # both tracked: the bigger keeps its id
    ((3, 7), {7}, [7], [(3, 7)]),  # ... unless the smaller is decided already
    ((3, 7), {3, 7}, [3, 7], []),  # two decided tracks are never joined
])
def test_absorb_inside(keys, locked, left, merged):
    pieces = [_piece(keys[0], [_RING]), _piece(keys[1], [_MIDDLE])]
    out, got = absorb_inside(pieces, 0.5, locked)
    assert [p.key for p in out] == left and got == merged
    if len(out) == 1:
        assert out[0].area == pieces[0].area + pieces[1].area


_L = ("poly", [(10, 10), (70, 10), (70, 25), (25, 25), (25, 70), (10, 70)])


@pytest.mark.parametrize("small,joins", [
    (("rect", ((38, 38), (62, 62))), True),  # a third inside the L's hull, all inside its box: a part of it
    (("rect", ((36, 36), (76, 56))), False),  # as far inside its hull, reaching out of its box: a neighbour
    (("rect", ((50, 50), (68, 68))), False),  # in the L's box, outside its hull: a neighbour in its corner
])
def test_absorb_inside_box_rule(small, joins):
    out, _ = absorb_inside([_piece(1, [_L]), _piece(None, [small])], 0.5, set())
    assert (len(out) == 1) == joins


def test_absorb_inside_keeps_neighbours_apart():
    out, got = absorb_inside([_piece(1, [_RING]), _piece(None, [_BESIDE])], 0.3, set())
    assert sorted(p.key or 0 for p in out) == [0, 1] and got == []
