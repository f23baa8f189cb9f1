"""The pipeline end to end on synthetic belt frames with a stub classifier."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from ewaste_stream.config import Config
from ewaste_stream.messages import Frame, RejectReason, StatusKind
from ewaste_stream.pipeline import Pipeline
from ewaste_stream.protocol import decode_decision, encode_decision
from ewaste_stream.synthetic import ColourClassifier, SynthBelt, SynthItem

W, H, FPS, SPEED = 640, 360, 30.0, 12.0
LINE = 0.75 * W


def _scene(n: int = 12, seed: int = 0) -> list[SynthItem]:
    rng = random.Random(seed)
    items, x = [], -60.0
    for i in range(n):
        lane = i % 3
        items.append(SynthItem(i + 1, cx=x, cy=70.0 + 110 * lane + rng.uniform(-10, 10), w=rng.uniform(50, 80),
                               h=rng.uniform(40, 60), angle=rng.uniform(-40, 40), cls=i % 5))
        if lane == 2:
            x -= 110.0
    return items


def _config(**kw) -> Config:
    return Config.model_validate({"detector": {"min_area": 300}, **kw})


def _run(items, frames, classifier=None, config=None, gone=None, flush=True, inline=False, statuses=None):
    belt = SynthBelt(W, H, seed=1, speed=lambda k: SPEED)
    clf = classifier or ColourClassifier()
    out = []
    pipe = Pipeline(config or _config(), clf, "boot-test", out.append,
                    (statuses.append if statuses is not None else None), inline_inference=inline)
    try:
        for k in range(frames):
            visible = [it for it in items if not (gone and it.item in gone and k >= gone[it.item])]
            img, _ = belt.frame(k, visible)
            pipe.process(Frame("cam0", k, k / FPS, img))
        if flush:
            pipe.flush((frames - 1) / FPS)
    finally:
        pipe.close()
    return out, belt, pipe


def _crossing_items(items, belt, frames, speed=SPEED):
    """item -> t when its centroid crosses the line (within the run)."""
    out = {}
    for it in items:
        for k in range(1, frames):
            if it.cx + belt.offset(k - 1) < LINE <= it.cx + belt.offset(k):
                out[it.item] = (k - 1 + (LINE - it.cx - belt.offset(k - 1)) / speed) / FPS
    return out


def _match_each(items, crossing, decisions) -> dict:
    """item -> its decision: each decision matches exactly one crossing item (time and place),
    with that item's label, and every crossing item has one."""
    by_item = {}
    for d in decisions:
        match = [i for i, t in crossing.items() if abs(t - d.t_cross) < 1.5 / FPS
                 and abs(next(it.cy for it in items if it.item == i) / H - d.y) < 0.05]
        assert len(match) == 1, d
        assert d.label == f"class{next(it.cls for it in items if it.item == match[0])}", d
        by_item[match[0]] = d
    assert len(by_item) == len(decisions) and set(by_item) == set(crossing)
    return by_item


def test_exactly_one_decision_per_item_with_the_right_label():
    items = _scene()
    decisions, belt, pipe = _run(items, 90, flush=False)
    crossing = _crossing_items(items, belt, 90)
    assert len(crossing) >= 9
    assert len(decisions) == len(crossing)
    assert [d.seq for d in decisions] == list(range(1, len(decisions) + 1))
    _match_each(items, crossing, decisions)
    for d in decisions:
        assert 0 <= d.t_decided - d.t_cross < 1.0 / FPS  # decided in the frame it crossed
        assert d.deadline is not None and d.deadline > d.t_cross
        assert (d.lane, d.actuator) == ("all", "jet0")
        assert d.model == {"name": "colour-stub", "sha256": "c" * 64} and d.config_sha
        assert decode_decision(encode_decision(d)) == decode_decision(encode_decision(d))
        assert encode_decision(decode_decision(encode_decision(d))) == encode_decision(d)
    st = pipe.stats()
    assert st["decisions"] == len(decisions) and st["views"] > 0 and st["pending_views"] == 0


class _SlowClassifier(ColourClassifier):
    """Random delays: decisions must not depend on how long the classifier takes."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)

    def predict(self, crops):
        time.sleep(self.rng.uniform(0, 0.01))
        return super().predict(crops)


def test_decisions_are_deterministic_whatever_the_classifier_timing():
    items = _scene(9, seed=3)
    runs = [_run(items, 80, classifier=clf, inline=inline)[0]
            for clf, inline in ((ColourClassifier(), True), (_SlowClassifier(1), False), (_SlowClassifier(2), False))]
    encoded = [[encode_decision(d) for d in r] for r in runs]
    assert encoded[0] and encoded[0] == encoded[1] == encoded[2]


class _UnsureOfOdd(ColourClassifier):
    """Sure (0.95) of the even classes, unsure (0.7: still sorted) of the odd ones."""

    def predict(self, crops):
        out = super().predict(crops)
        for row in out:
            c = int(row.argmax())
            p = 0.95 if c % 2 == 0 else 0.7
            row[:] = (1.0 - p) / (len(row) - 1)
            row[c] = p
        return out


@pytest.mark.parametrize("stop", [0.9, None])
def test_an_item_whose_first_view_sorts_it_surely_gets_no_more_views(stop):
    items = _scene()
    cfg = _config(batching={"views_per_item": 3, "stop_confidence": stop})
    decisions, belt, pipe = _run(items, 90, classifier=_UnsureOfOdd(), config=cfg, flush=False)
    by_item = _match_each(items, _crossing_items(items, belt, 90), decisions)  # right labels, once each
    cls = {it.item: it.cls for it in items}
    sure = [d.views for i, d in by_item.items() if cls[i] % 2 == 0]
    unsure = [d.views for i, d in by_item.items() if cls[i] % 2 == 1]
    assert len(sure) >= 3 and len(unsure) >= 3
    assert unsure == [3] * len(unsure)
    assert sure == [1 if stop else 3] * len(sure)
    assert pipe.stats()["views_skipped"] >= (2 * len(sure) if stop else 0)  # shown in /healthz
    assert stop or pipe.stats()["views_skipped"] == 0


def test_item_lost_before_the_line_is_decided_once_as_lost():
    items = [SynthItem(1, cx=-40.0, cy=120.0, w=70, h=50, cls=1), SynthItem(2, cx=-40.0, cy=260.0, w=70, h=50, cls=2)]
    decisions, _, _ = _run(items, 60, classifier=ColourClassifier(confidence=0.8), gone={1: 20}, flush=False)
    lost = [d for d in decisions if d.reject_reason == RejectReason.LOST_TRACK]
    assert len(lost) == 1 and abs(lost[0].y - 120 / H) < 0.05
    assert lost[0].top_label == "class1" and lost[0].views >= 1
    assert len([d for d in decisions if d.label == "class2"]) == 1


def test_flush_decides_items_in_flight():
    items = [SynthItem(1, cx=-40.0, cy=180.0, w=70, h=50, cls=3)]
    decisions, _, _ = _run(items, 25, flush=True)  # centroid reaches ~260 px: not at the line yet
    assert len(decisions) == 1
    d = decisions[0]
    assert d.t_cross == pytest.approx(24 / FPS) and d.top_label == "class3"


class _Broken(ColourClassifier):
    def predict(self, crops):
        raise RuntimeError("model exploded")


def test_classifier_failure_is_reported_and_items_still_decided():
    statuses = []
    items = _scene(6)
    decisions, belt, pipe = _run(items, 80, classifier=_Broken(), statuses=statuses, flush=False)
    assert len(decisions) == len(_crossing_items(items, belt, 80))
    assert all(d.reject_reason == RejectReason.TOO_FEW_VIEWS for d in decisions)
    assert any(s.kind == StatusKind.STAGE_ERROR and "exploded" in s.detail for s in statuses)
    assert pipe.stats()["stage_errors"] > 0


def test_decision_sink_failure_does_not_stop_the_pipeline():
    statuses = []
    belt = SynthBelt(W, H, seed=1, speed=lambda k: SPEED)

    def bad_sink(d):
        raise OSError("disk full")

    pipe = Pipeline(_config(), ColourClassifier(), "b", bad_sink, statuses.append, inline_inference=True)
    made = []
    for k in range(80):
        img, _ = belt.frame(k, _scene(6))
        made += pipe.process(Frame("cam0", k, k / FPS, img))
    pipe.close()
    assert made and pipe.stats()["sink_errors"] == len(made)
    assert any(s.kind == StatusKind.SINK_ERROR for s in statuses)


def test_lanes_and_deadline_from_config():
    cfg = _config(decision={"lanes": [{"name": "top", "y_max": 0.5, "actuator": "j1"},
                                      {"name": "bottom", "y_max": 1.0, "actuator": "j2"}],
                            "belt_speed_mps": 2.0, "px_per_m": 1000.0, "actuator_distance_m": 0.5})
    items = [SynthItem(1, cx=-40.0, cy=80.0, w=70, h=50, cls=0), SynthItem(2, cx=-40.0, cy=280.0, w=70, h=50, cls=1)]
    decisions, _, _ = _run(items, 60, config=cfg, flush=False)
    by_label = {d.label: d for d in decisions}
    assert (by_label["class0"].lane, by_label["class0"].actuator) == ("top", "j1")
    assert (by_label["class1"].lane, by_label["class1"].actuator) == ("bottom", "j2")
    assert by_label["class0"].deadline == pytest.approx(by_label["class0"].t_cross + 0.25)


def test_pipeline_rejects_nothing_silently_on_empty_belt():
    decisions, _, pipe = _run([], 30)
    assert decisions == [] and pipe.stats()["tracks"] == 0


class _Recorder(ColourClassifier):
    def __init__(self) -> None:
        super().__init__()
        self.crops: list[np.ndarray] = []

    def predict(self, crops):
        self.crops.extend(crops)
        return super().predict(crops)


def _fill_of_item(crop: np.ndarray) -> float:
    """Share of its bounding box the item (bright/coloured pixels, not the grey belt) fills
    in the middle of the crop (1.0 = an axis-aligned rectangle)."""
    item = np.abs(crop.astype(np.int16) - 52).max(axis=2) > 45
    n, labels, stats, _ = __import__("cv2").connectedComponentsWithStats(item.astype(np.uint8))
    c = labels[crop.shape[0] // 2, crop.shape[1] // 2]
    if c == 0:
        return 0.0
    return float(stats[c, 4] / (stats[c, 2] * stats[c, 3]))


def test_derotate_cuts_views_along_the_items_rectangle():
    items = [SynthItem(i + 1, cx=-60.0 - 140 * (i // 2), cy=100.0 + 160 * (i % 2), w=90, h=40,
                       angle=(-35, 25, 40, -20, 30, -40)[i], cls=i % 5) for i in range(6)]
    fills = {}
    for derotate in (False, True):
        clf = _Recorder()
        decisions, _, _ = _run(items, 90, classifier=clf, config=_config(batching={"derotate": derotate}))
        assert sorted(d.label for d in decisions) == sorted(f"class{it.cls}" for it in items)
        fills[derotate] = float(np.median([_fill_of_item(c) for c in clf.crops]))
    assert fills[True] > 0.85 > fills[False]


def test_a_lighting_step_mid_run_loses_no_item():
    """The light switches (the whole picture 1.5x brighter from frame 35): one status says so,
    and every item still gets exactly one decision with its label."""
    items = _scene()
    belt = SynthBelt(W, H, seed=1, speed=lambda k: SPEED)
    out, statuses = [], []
    pipe = Pipeline(_config(), ColourClassifier(), "boot-test", out.append, statuses.append, inline_inference=True)
    try:
        for k in range(90):
            img, _ = belt.frame(k, items)
            if k >= 35:
                img = np.clip(img.astype(np.float32) * 1.5, 0, 255).astype(np.uint8)
            pipe.process(Frame("cam0", k, k / FPS, img))
    finally:
        pipe.close()
    crossing = _crossing_items(items, belt, 90)
    light = [s for s in statuses if s.kind == StatusKind.LIGHT_CHANGED]
    assert len(light) == 1 and light[0].source == "cam0" and light[0].t == 35 / FPS, statuses
    assert 45 <= int(light[0].detail.split("became +")[1].split(" %")[0]) <= 50, light[0].detail
    assert len(out) == len(crossing)
    _match_each(items, crossing, out)


@pytest.mark.parametrize("stop", [(40, 140), (55, 400)])
def test_belt_stopped_with_items_in_view_decides_each_once_after_restart(stop):
    """The belt stops (3 s, then 11 s) with items in view and starts again: every item is still
    decided exactly once, with its label (the belt model used to learn the still items)."""
    items = _scene()
    belt = SynthBelt(W, H, seed=1, speed=lambda k: 0.0 if stop[0] <= k < stop[1] else SPEED)
    frames = stop[1] + 110
    out = []
    pipe = Pipeline(_config(), ColourClassifier(), "boot-test", out.append, inline_inference=True)
    try:
        for k in range(frames):
            pipe.process(Frame("cam0", k, k / FPS, belt.frame(k, items)[0]))
    finally:
        pipe.close()
    crossing = _crossing_items(items, belt, frames)
    assert len(crossing) >= 9 and len(out) == len(crossing)
    _match_each(items, crossing, out)


@pytest.mark.parametrize("step", [None, 0.045])
def test_slow_belt_leaves_frames_out_and_still_decides_each_item_once(step):
    """At 3 px a frame, ``tracker.min_step`` 0.045 (16 px at 360 px high) runs about every fifth
    frame (here ``max_skip_s`` allows it): fewer steps for a slow item, each item still decided
    once, with its label, within ``max_skip_s`` of its crossing. ``None`` runs every frame."""
    speed, frames = 3.0, 230
    items = _scene(6)
    belt = SynthBelt(W, H, seed=1, speed=lambda k: speed)
    out = []
    pipe = Pipeline(_config(tracker={"min_step": step, "max_skip_s": 0.2}), ColourClassifier(), "boot-test",
                    out.append, inline_inference=True)
    try:
        for k in range(frames):
            pipe.process(Frame("cam0", k, k / FPS, belt.frame(k, items)[0]))
        stats = pipe.stats()
    finally:
        pipe.close()
    crossing = _crossing_items(items, belt, frames, speed)
    assert len(crossing) == 6 and len(out) == 6
    _match_each(items, crossing, out)
    skipped = stats["frames_skipped"].get("cam0", 0)
    assert skipped == 0 if step is None else frames * 0.7 <= skipped <= frames * 0.85
    assert skipped + stats["frames"]["cam0"] == frames
    assert all(0 <= d.t_decided - d.t_cross < (0.2 if step else 1.0 / FPS) for d in out)


def test_on_view_sees_each_view_as_the_classifier_gets_it():
    """``Pipeline.on_view`` (diagnostics, e.g. refitting the head on the views the line classifies):
    every view sent to the classifier, in order, its ``image()`` the pixels the classifier got (the
    neighbours painted out), and its track id the ``item_id`` of that item's decision."""
    items = [SynthItem(2 * i + j + 1, cx=-60.0 - 170 * i - 72 * j, cy=100.0 + 160 * (i % 2), w=60, h=50, angle=0,
                       cls=(2 * i + j) % 5) for i in range(4) for j in range(2)]  # pairs 12 px apart along the belt
    clf = _Recorder()
    out, jobs = [], []
    pipe = Pipeline(_config(batching={"stop_confidence": None, "crop_margin": 0.4}), clf, "boot-test", out.append, inline_inference=True)
    pipe.on_view = lambda job: jobs.append((job.track_id, job.image(), job.crop))
    belt = SynthBelt(W, H, seed=1, speed=lambda k: SPEED)
    try:
        for k in range(90):
            pipe.process(Frame("cam0", k, k / FPS, belt.frame(k, items)[0]))
        pipe.flush(89 / FPS)
    finally:
        pipe.close()
    assert len(jobs) == len(clf.crops) == pipe.stats()["views"] > len(out)
    assert all(np.array_equal(image, seen) for (_, image, _), seen in zip(jobs, clf.crops))
    assert any(not np.array_equal(image, crop) for _, image, crop in jobs)  # some were painted
    assert {t for t, _, _ in jobs} <= {d.item_id for d in out}
