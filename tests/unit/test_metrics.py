"""Metrics: decision counters, latency, late decisions, snapshot-driven per-source series."""

from __future__ import annotations

import pytest

from ewaste_stream.metrics import DaemonMetrics, TimedClassifier
from ewaste_stream.testing import StubClassifier, make_decision


def _value(m: DaemonMetrics, name: str, labels: dict | None = None) -> float:
    v = m.registry.get_sample_value(name, labels or {})
    return 0.0 if v is None else v


@pytest.mark.parametrize("t, now, late", [
    (1.0, None, 0),  # t_decided 1.52 < deadline 2.0
    (1.0, 1.9, 0),
    (1.0, 2.5, 1),  # published after the deadline (live backlog) is late
])
def test_decision_counters_and_late(t, now, late):
    m = DaemonMetrics()
    assert m.on_decision(make_decision(1, t=t), now) is bool(late)
    assert m.on_decision(make_decision(2, label="reject", t=10.0)) is False
    assert _value(m, "ewaste_decisions_total", {"label": "Mouse", "reject_reason": ""}) == 1
    assert _value(m, "ewaste_decisions_total", {"label": "reject", "reject_reason": "low_confidence"}) == 1
    assert _value(m, "ewaste_late_decisions_total") == late
    assert _value(m, "ewaste_decision_latency_seconds_count") == 2 and _value(m, "ewaste_last_seq") == 2


def test_snapshot_feeds_per_source_series_and_registries_are_independent():
    snap = {"status": "ok", "sources": {"cam0": {"frames": 10, "dropped": 2, "reconnects": 1, "state": "running",
                                                   "fps": 25.0}},
            "queue_depths": {"cam0": 1, "publisher": 0}, "publisher": {"published": 7},
            "pipeline": {"ignored_regions": {"faint": 12, "thin": 0}, "views": 40, "views_skipped": 9,
                         "views_flipped": 17}}
    a, b = DaemonMetrics(lambda: snap), DaemonMetrics()
    text = a.render().decode()
    assert 'ewaste_frames_dropped_total{camera="cam0"} 2.0' in text
    assert 'ewaste_queue_depth{queue="publisher"} 0.0' in text and "ewaste_healthy 1.0" in text
    assert "ewaste_publisher_published_total 7.0" in text
    assert 'ewaste_regions_ignored_total{reason="faint"} 12.0' in text
    assert 'ewaste_views_total{outcome="classified"} 40.0' in text
    assert 'ewaste_views_total{outcome="mirrored"} 17.0' in text and 'ewaste_views_total{outcome="skipped"} 9.0' in text
    assert "cam0" not in b.render().decode()


def test_timed_classifier_observes_batches_and_passes_through():
    seen = []
    clf = TimedClassifier(StubClassifier(), lambda n, s: seen.append(n))
    import numpy as np

    out = clf.predict([np.zeros((8, 8, 3), np.uint8)] * 3)
    assert out.shape == (3, 2) and seen == [3] and clf.class_names == ("Mouse", "PCB") and clf.name == "stub"


def test_daemon_logs_one_summary_line_per_period():
    from loguru import logger

    from ewaste_stream.app import Daemon
    from ewaste_stream.clock import FakeClock
    from ewaste_stream.config import load_config
    from ewaste_stream.testing import StubPipeline

    cfg = load_config(None, {"cameras": [{"id": "cam0", "source": "/nowhere/belt.mp4"}],
                             "publish": {"endpoint": None, "decisions_log": None}, "metrics": {"listen": None},
                             "logging": {"file": None, "summary_every_s": 60}})
    clock = FakeClock()
    daemon = Daemon(cfg, StubClassifier(), clock=clock, pipeline_factory=StubPipeline)
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    try:
        clock.advance(10.0)
        daemon._on_decision(make_decision(1, t=9.0))  # crossed at 9.5, published at 10: on time
        daemon._on_decision(make_decision(2, t=8.0))  # deadline 9.0: late, 1.5 s after its crossing
        daemon._on_decision(make_decision(3, label="reject", t=9.3))
        daemon.sources[0].queue.dropped = 4
        clock.advance(49.0)
        daemon._housekeeping()  # t = 59: not yet
        assert not [x for x in lines if x.startswith("last ")]
        clock.advance(1.0)
        daemon._housekeeping()
        clock.advance(60.0)
        daemon._housekeeping()
    finally:
        logger.remove(sink)
    summary = [x for x in lines if x.startswith("last ")]
    assert len(summary) == 2
    assert summary[0].startswith("last 60 s: 3 decisions (0.1/s), 1 rejected (33.3 %), 1 late, oldest published "
                                 "1500 ms after the line; frames cam0 0 captured / 4 dropped; stage errors 0")
    assert summary[1].startswith("last 60 s: 0 decisions (0.0/s), 0 rejected (0.0 %), 0 late") and "/ 0 dropped" in summary[1]


@pytest.mark.parametrize("captured, dropped, late, behind", [
    (600, 0, 0, False),  # keeping up
    (600, 149, 0, False),  # under a quarter of the frames dropped
    (600, 150, 0, True),  # a quarter: the pipeline is behind
    (20, 20, 0, False),  # too few frames to say (a camera just started)
    (600, 0, 1, True),  # a decision published after its deadline
])
def test_behind_from_dropped_frames_and_late_decisions(captured, dropped, late, behind):
    from ewaste_stream.app import Behind

    b = Behind(0.25)
    assert b.update(100.0, {"cam0": (1000, 40)}, 3) == ()
    reasons = b.update(110.0, {"cam0": (1000 + captured, 40 + dropped)}, 3 + late)
    assert bool(reasons) == behind
    if behind:
        assert ("dropped" in reasons[0] and "cam0" in reasons[0]) if dropped else "deadline" in reasons[0]


def test_behind_forgets_what_left_the_window_and_can_be_off():
    from ewaste_stream.app import Behind

    b = Behind(0.25, window_s=10.0)
    b.update(0.0, {"cam0": (0, 0)}, 0)
    assert b.update(5.0, {"cam0": (300, 200)}, 0)  # 200 of 300 dropped
    for t in range(6, 16):  # keeping up from t = 5 on: 60 frames a second, none dropped
        b.update(float(t), {"cam0": (300 + 60 * (t - 5), 200)}, 0)
    assert b.reasons == ()  # the window now starts at t = 5
    off = Behind(None)
    off.update(0.0, {"cam0": (0, 0)}, 0)
    assert off.update(5.0, {"cam0": (300, 300)}, 0) == ()


def test_daemon_health_degraded_while_behind_then_ok_again():
    from loguru import logger

    from ewaste_stream.app import Daemon
    from ewaste_stream.clock import FakeClock
    from ewaste_stream.config import load_config
    from ewaste_stream.testing import StubPipeline

    cfg = load_config(None, {"cameras": [{"id": "cam0", "source": "/nowhere/belt.mp4"}],
                             "publish": {"endpoint": None, "decisions_log": None}, "metrics": {"listen": None},
                             "logging": {"file": None}})
    clock = FakeClock()
    daemon = Daemon(cfg, StubClassifier(), clock=clock, pipeline_factory=StubPipeline)
    daemon._state = "running"
    src = daemon.sources[0]
    src.state = "ended"  # (its state no longer counts: the test drives the counts itself)
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    try:
        daemon._housekeeping()
        assert daemon.status() == "ok"
        clock.advance(5.0)
        src.frames_captured, src.queue.dropped = 300, 120  # 40 % dropped
        daemon._housekeeping()
        assert daemon.status() == "degraded"
        assert "camera cam0 dropped 120 of 300 frames" in daemon.snapshot()["behind"][0]
        for _ in range(12):  # keeping up again for 12 s
            clock.advance(1.0)
            src.frames_captured += 60
            daemon._housekeeping()
        assert daemon.status() == "ok" and daemon.snapshot()["behind"] == []
    finally:
        logger.remove(sink)
    assert [x for x in lines if x.startswith("health degraded: camera cam0 dropped 120 of 300")]
    assert [x for x in lines if x.startswith("keeping up again")]
    # the 10-s line reads the same count as the health (the camera's queue), once per period with drops
    assert [x for x in lines if "dropped in the last 10 s" in x] == [
        "camera cam0: 120 frame(s) dropped in the last 10 s (pipeline slower than capture)"]
