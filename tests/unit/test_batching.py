"""View selection, crops, deterministic batching and the inference worker."""

from __future__ import annotations

import numpy as np
import pytest

from ewaste_stream.batching import Batcher, InferenceWorker, ViewJob, ViewSelector, flip_unsure, square_crop


def _job(track: int, t: float) -> ViewJob:
    return ViewJob(track, "cam0", t, np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize("adds,t_now,urgent,sizes", [
    ([(1, 0.0), (2, 0.0), (3, 0.0)], 0.0, set(), [2]),  # one full batch of 2, one waits
    ([(1, 0.0)], 0.019, set(), []),  # not waited long enough
    ([(1, 0.0)], 0.020, set(), [1]),  # waited max_wait
    ([(1, 0.0), (2, 0.01)], 0.01, {2}, [2]),  # an urgent view sends everything waiting
    ([(1, 0.0), (2, 0.0), (3, 0.0), (4, 0.0), (5, 0.0)], 0.5, set(), [2, 2, 1]),
])
def test_batcher_boundaries_depend_on_stream_time_only(adds, t_now, urgent, sizes):
    b = Batcher(max_batch=2, max_wait_s=0.02)
    for track, t in adds:
        b.add(_job(track, t))
    assert [len(x) for x in b.due(t_now, urgent)] == sizes


def test_batcher_drain_and_drop():
    b = Batcher(3, 1.0)
    for i in range(4):
        b.add(_job(i % 2, 0.0))
    b.drop(0)
    assert len(b) == 2
    assert [len(x) for x in b.drain()] == [2] and len(b) == 0


def test_view_selector_spreads_views_to_the_line():
    sel = ViewSelector(views_per_item=3, guard_frames=2.0)
    taken = [u for u in range(0, 400, 10) if sel.want(7, "cam0", float(u), line_u=300.0, step_u=10.0)]
    # first view at once, then evenly up to the line minus 2 frames of travel (280)
    assert taken == [0, 140, 280]
    assert sel.taken(7, "cam0") == 3
    assert sel.want(7, "cam1", 50.0, 300.0, 10.0)  # per camera
    sel.forget(7)
    assert sel.taken(7, "cam0") == 0


def test_square_crop_is_rgb_square_and_reflects_at_edges():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :, 0] = 255  # blue in BGR
    crop = square_crop(img, (0.0, 0.0, 40.0, 20.0), margin=0.25)
    assert crop.shape == (60, 60, 3)
    assert crop[..., 2].min() == 255 and crop[..., 0].max() == 0  # RGB: blue last


def _scene():
    """A 40 x 40 crop: grey belt (60), this item (200) on the left, another (120) at the right edge."""
    crop = np.full((40, 40, 3), 60, np.uint8)
    own, others = np.zeros((40, 40), np.uint8), np.zeros((40, 40), np.uint8)
    crop[10:30, 5:25], own[10:30, 5:25] = 200, 1
    crop[0:40, 32:40], others[0:40, 32:40] = 120, 1
    crop[0:40, 30:32] = 90  # the neighbour's blurred edge, outside its mask
    return crop, own, others


@pytest.mark.parametrize("grow,own_grow,expect", [
    (0, 0, {"edge": 90, "other": 60}),  # its mask only: the blurred edge stays
    (2, 0, {"edge": 60, "other": 60}),  # grown 2 px: the edge goes too
    (8, 0, {"edge": 60, "other": 60}),  # grown into this item: the item is kept
])
def test_paint_others_paints_neighbours_the_belts_colour_and_keeps_the_item(grow, own_grow, expect):
    from ewaste_stream.batching import paint_others

    crop, own, others = _scene()
    out = paint_others(crop, others, own, grow, own_grow)
    assert out[20, 36, 0] == expect["other"] and out[20, 30, 0] == expect["edge"]
    assert (out[10:30, 5:25] == 200).all()  # this item untouched
    assert out[2, 2, 0] == 60  # the belt too
    assert crop[20, 36, 0] == 120  # the input is not changed


def test_a_view_job_is_painted_when_the_classifier_takes_it():
    """The masks travel with the job; the worker's thread paints (``ViewJob.image``)."""
    crop, own, others = _scene()
    seen = []

    class Clf(_Clf):
        def predict(self, crops):
            seen.extend(c.copy() for c in crops)
            return super().predict(crops)

    w = InferenceWorker(Clf(), inline=True)
    w.submit([ViewJob(1, "cam0", 0.0, crop, 1.0, (others, own, 2, 0)), ViewJob(2, "cam0", 0.0, crop)])
    assert seen[0][20, 36, 0] == 60 and seen[1][20, 36, 0] == 120  # painted / as cut
    assert crop[20, 36, 0] == 120


def test_paint_others_leaves_the_crop_when_there_is_no_neighbour_or_no_belt_to_take_the_colour_from():
    from ewaste_stream.batching import paint_others

    crop, own, others = _scene()
    assert paint_others(crop, np.zeros_like(others), own, 4) is crop
    crowded = np.ones_like(others)
    crowded[10:30, 5:25] = 0
    assert paint_others(crop, crowded, own, 0, 2) is crop  # no belt left in view: nothing to paint with


@pytest.mark.parametrize("seed", range(5))
def test_the_belts_colour_is_the_lower_median_of_the_pixels_under_the_mask(seed):
    from ewaste_stream.batching import _median_colour

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (20, 30 + seed, 3), np.uint8)  # odd and even pixel counts
    mask = (rng.random(img.shape[:2]) < 0.5).astype(np.uint8)
    px = np.sort(img[mask > 0], axis=0)
    assert _median_colour(img, mask).tolist() == px[(len(px) - 1) // 2].tolist()


def test_cut_window_reflects_like_square_crop_for_masks_too():
    from ewaste_stream.batching import crop_window, cut_window, reflect_out

    img = np.arange(100 * 200, dtype=np.int32).reshape(100, 200) % 251
    img = img.astype(np.uint8)
    win = crop_window((-5.0, 80.0, 30.0, 110.0), 0.1)  # past the left and the bottom edge
    whole = cut_window(img, win)
    assert whole.shape == (win[3] - win[1], win[2] - win[0])
    inside = img[max(0, win[1]):min(100, win[3]), max(0, win[0]):min(200, win[2])]
    assert np.array_equal(reflect_out(inside, img.shape, win), whole)
    rgb = square_crop(np.dstack([img] * 3), (-5.0, 80.0, 30.0, 110.0), 0.1)
    assert np.array_equal(rgb[..., 0], whole)


class _Clf:
    class_names = ("a", "b")
    name = "t"
    sha256 = "0"

    def __init__(self, fail: bool = False):
        self.fail = fail

    def predict(self, crops):
        if self.fail:
            raise RuntimeError("boom")
        return np.tile(np.array([[0.25, 0.75]], np.float32), (len(crops), 1))


@pytest.mark.parametrize("inline", [True, False])
def test_inference_worker_results_in_order(inline):
    w = InferenceWorker(_Clf(), max_inflight=2, inline=inline)
    try:
        b1 = w.submit([_job(1, 0.0)])
        b2 = w.submit([_job(2, 0.0), _job(3, 0.0)])
        assert w.wait_oldest() is b1 and b1.future.result().shape == (1, 2)
        assert w.wait_oldest() is b2 and b2.future.result().shape == (2, 2)
        assert w.crops == 3 and w.batches == 2
    finally:
        w.close()


def test_inference_worker_error_reaches_the_caller():
    w = InferenceWorker(_Clf(fail=True), inline=False)
    try:
        w.submit([_job(1, 0.0)])
        batch = w.wait_oldest()
        assert isinstance(batch.future.exception(), RuntimeError)
    finally:
        w.close()


class _Sided:
    """Says class 1 for a crop whose left column is bright, class 0 otherwise, surer the brighter
    the crop's first pixel: so a mirrored crop gets other probabilities than the crop."""

    class_names = ("a", "b")
    name = "sided"
    sha256 = "0"

    def __init__(self) -> None:
        self.calls: list[list[np.ndarray]] = []

    def predict(self, crops):
        self.calls.append([c.copy() for c in crops])
        out = []
        for c in crops:
            sure = 0.5 + c[0, 0, 1] / 510.0  # 0.5 .. 1.0
            out.append([1 - sure, sure] if c[:, 0, 0].mean() > 100 else [sure, 1 - sure])
        return np.array(out, np.float32)


def _sided(left: int, sure_level: int) -> np.ndarray:
    c = np.zeros((4, 6, 3), np.uint8)
    c[:, 0, 0] = left  # the left column: bright or dark
    c[0, 0, 1] = c[0, -1, 1] = sure_level  # mirrored, the first pixel keeps its level
    return c


@pytest.mark.parametrize("below, flipped", [(None, 0), (0.5, 0), (0.8, 1), (0.95, 2)])
def test_unsure_views_get_a_mirrored_second_look(below, flipped):
    """Only the views under ``flip_below`` are classified again, mirrored, and averaged."""
    sure, unsure = _sided(200, 204), _sided(200, 51)  # class 1 at 0.9 / at 0.6; mirrored, class 0 at 0.9 / 0.6
    clf = _Sided()
    w = InferenceWorker(clf, inline=True, flip_below=below)
    b = w.submit([ViewJob(1, "cam0", 0.0, sure), ViewJob(2, "cam0", 0.0, unsure)])
    probs = b.future.result()
    assert w.flipped == flipped and len(clf.calls) == (1 if flipped == 0 else 2)
    if flipped:  # the second call: the unsure crops only, mirrored left to right
        assert len(clf.calls[1]) == flipped and np.array_equal(clf.calls[1][-1], unsure[:, ::-1])
        assert flipped == 2 or not np.array_equal(clf.calls[1][0], sure[:, ::-1])
    np.testing.assert_allclose(probs[1], [0.5, 0.5] if flipped >= 1 else [0.4, 0.6], atol=1e-6)
    np.testing.assert_allclose(probs[0], [0.5, 0.5] if flipped == 2 else [0.1, 0.9], atol=1e-6)


class _Corner:
    """Class 1 with the probability of the crop's top-left pixel (/ 255): a mirrored crop shows
    another corner there."""

    def __init__(self) -> None:
        self.calls: list[list[np.ndarray]] = []

    def predict(self, crops):
        self.calls.append([c.copy() for c in crops])
        return np.array([[1 - c[0, 0, 0] / 255.0, c[0, 0, 0] / 255.0] for c in crops], np.float32)


@pytest.mark.parametrize("flips, p1", [
    (("horizontal",), (0.2 + 0.4) / 2),
    (("vertical",), (0.2 + 0.6) / 2),
    (("both",), (0.2 + 0.8) / 2),
    (("horizontal", "vertical"), (0.2 + 0.4 + 0.6) / 3),
    (("horizontal", "vertical", "both"), (0.2 + 0.4 + 0.6 + 0.8) / 4),
])
def test_each_mirror_of_the_second_look_is_averaged_in(flips, p1):
    crop = np.zeros((4, 6, 3), np.uint8)
    crop[0, 0, 0], crop[0, -1, 0], crop[-1, 0, 0], crop[-1, -1, 0] = 51, 102, 153, 204  # 0.2 .. 0.8 by corner
    sure = np.zeros_like(crop)  # 1.0 for class 0: no second look
    clf = _Corner()
    w = InferenceWorker(clf, inline=True, flip_below=0.9, flips=flips)
    probs = w.submit([ViewJob(1, "cam0", 0.0, sure), ViewJob(2, "cam0", 0.0, crop)]).future.result()
    assert w.flipped == 1 and len(clf.calls) == 2 and len(clf.calls[1]) == len(flips)  # one more call, all mirrors
    np.testing.assert_allclose(probs[1], [1 - p1, p1], atol=1e-6)
    np.testing.assert_allclose(probs[0], [1.0, 0.0], atol=1e-6)


def test_an_unknown_mirror_is_refused():
    with pytest.raises(ValueError, match="sideways"):
        InferenceWorker(_Corner(), inline=True, flip_below=0.9, flips=("sideways",))


def test_flip_unsure_refuses_a_classifier_that_answers_the_wrong_shape():
    with pytest.raises(ValueError, match="mirrored"):
        flip_unsure(lambda crops: np.zeros((len(crops) + 1, 2), np.float32), [np.zeros((2, 2, 3), np.uint8)],
                    np.array([[0.5, 0.5]], np.float32), 0.9)


def test_the_config_offers_exactly_the_mirrors_the_worker_knows():
    from typing import get_args

    from ewaste_stream.batching import MIRRORS
    from ewaste_stream.config import BatchingSection

    mirror = get_args(BatchingSection.model_fields["flips"].annotation)[0]  # tuple[Literal[...], ...]
    assert set(get_args(mirror)) == set(MIRRORS)
