"""Fragments of one item vs neighbours: waiting for an item still coming in, joining its
small fragments, and dark (low-contrast) items on a dark belt (synthetic masks)."""

from __future__ import annotations

import numpy as np
import pytest

from ewaste_stream.detect import FrameAnalysis
from ewaste_stream.join import JoinRules, join_fragments
from ewaste_stream.segment import Piece, piece_from_mask, segment

from test_track import FPS, _mask, _run, _tracker


@pytest.mark.parametrize("upstream", [1, -1])
@pytest.mark.parametrize("gap,frag_w,near,small_px,waits", [
    (2, 6, 3, 200, True),  # a small piece beside an item coming in: a fragment of it, it waits
    (2, 6, 0, 200, False),  # rule off (near 0)
    (2, 6, 3, 0, False),  # rule off (small 0)
    (2, 12, 3, 200, False),  # big enough to be an item of its own: it does not wait
    (8, 6, 3, 200, False),  # far from the item coming in: a neighbour
])
def test_segment_small_piece_near_an_entering_item_waits(gap, frag_w, near, small_px, waits, upstream):
    fg = _mask([(0, 40, 30, 80), (30 + gap, 50, 30 + gap + frag_w, 70)])
    if upstream < 0:  # items come in over the right edge
        fg = np.ascontiguousarray(fg[:, ::-1])
    pieces = segment(fg, [], slack=2, min_new_px=20, upstream=upstream, near=near, small_px=small_px)
    body, frag = sorted(pieces, key=lambda p: -p.area)
    assert frag.entering is waits
    assert body.entering


def _p(rects) -> Piece:
    p = piece_from_mask(None, _mask(rects), 0, 0)
    assert p is not None
    return p


@pytest.mark.parametrize("frag,gap,small,joined", [
    ((71, 50, 77, 70), 0, (0.0, 0), False),  # 1 px gap, rule off: stays apart
    ((71, 50, 77, 70), 0, (200.0, 2), True),  # 1 px gap, small fragment: joins the compact item
    ((71, 50, 83, 70), 0, (200.0, 2), False),  # 1 px gap but item-sized (240 px): a neighbour
    ((75, 50, 81, 70), 0, (200.0, 2), False),  # 4 px gap: a neighbour
    ((70, 50, 82, 70), 0, (200.0, 2), False),  # item-sized and touching (join_gap 0, the default): apart
    ((70, 50, 82, 70), 1, (200.0, 2), True),  # ... join_gap 1 px joins it (merged neighbours on a busy belt)
])
def test_join_fragments_small_fragment_within_near(frag, gap, small, joined):
    body = _p([(20, 40, 70, 80)])
    out, _ = join_fragments([body, _p([frag])], [], JoinRules(gap=gap, neck_ratio=0.6, min_radius=2.5, small=small))
    assert (len(out) == 1) is joined


def test_item_with_a_leading_fragment_is_one_track():
    """An item split by a dark band near its leading end comes in as a small fragment 1 px
    ahead of its body: one track, one crossing (was two: a duplicate decision)."""
    x, y = -80, 60
    items = [(x, y, 50, 40), (x + 51, y + 5, 6, 20)]
    _, steps = _run(items, [8.0] * 45, tracker=_tracker())
    assert len({tr.id for st in steps for tr, _ in st.seen}) == 1
    assert len([tr for st in steps for tr in st.crossed]) == 1
    _, old = _run(items, [8.0] * 45, tracker=_tracker(entering_small=0.0))
    assert len({tr.id for st in old for tr, _ in st.seen}) == 2  # the rule is what makes it one


def test_two_items_10px_apart_stay_two_tracks():
    """Neighbours 10 px apart (2.5 px at the detector's 1/4 scale: use 3 px here) never join."""
    items = [(-80, 60, 50, 40), (-80 + 53, 60, 30, 40)]
    _, steps = _run(items, [8.0] * 45, tracker=_tracker())
    assert len({tr.id for st in steps for tr, _ in st.seen}) == 2
    assert len([tr for st in steps for tr in st.crossed]) == 2


@pytest.mark.parametrize("h,kw,tracks", [(3, {}, 0), (4, {}, 0), (5, {}, 1), (6, {}, 1), (12, {}, 1),
                                         (5, {"min_item_radius": 0.017}, 0), (8, {"min_item_radius": 0.017}, 1)])
def test_thin_streaks_are_not_items(h, kw, tracks):
    """A region thinner than min_item_radius (2.27 px here; 0.017: 3.06 px) is a streak, not an item."""
    _, steps = _run([(-60, 60, 50, h)], [6.0] * 40, tracker=_tracker(**kw))
    assert len({tr.id for st in steps for tr, _ in st.seen}) == tracks


def _run_contrast(rect, level, **kw):
    tr = _tracker(**kw)
    seen = set()
    for k in range(40):
        x = rect[0] + 6 * k
        m = _mask([(x, rect[1], x + rect[2], rect[1] + rect[3])])
        an = FrameAnalysis("cam0", k, k / FPS, m, (1.0, 1.0), (6.0, 0.0) if k else None, 0.9 if k else 0.0,
                           contrast=np.where(m > 0, level, 0.0).astype(np.float32))
        seen |= {t.id for t, _ in tr.step(an).seen}
    return len(seen)


@pytest.mark.parametrize("rect,level,kw,tracks", [
    ((-60, 60, 40, 40), 1.2, {}, 1),  # a big dark item: low contrast all over, still an item
    ((-60, 60, 40, 40), 1.2, {"min_contrast_area": 1e9}, 0),  # the old rule dropped it
    ((-20, 60, 10, 8), 1.2, {}, 0),  # a small low-contrast patch: the belt
    ((-20, 60, 13, 10), 1.2, {}, 0),  # 3.25 x min area at 1.2: summed contrast 3.9 < 3 x 1.6, the belt
    ((-20, 60, 13, 10), 1.5, {}, 1),  # ... at 1.5: 4.9 >= 4.8, an item
    ((-20, 60, 10, 8), 3.0, {}, 1),  # a small item with contrast
])
def test_low_contrast_regions(rect, level, kw, tracks):
    assert _run_contrast(rect, level, **kw) == tracks
