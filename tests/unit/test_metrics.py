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
    m.on_decision(make_decision(1, t=t), now)
    m.on_decision(make_decision(2, label="reject", t=10.0))
    assert _value(m, "ewaste_decisions_total", {"label": "Mouse", "reject_reason": ""}) == 1
    assert _value(m, "ewaste_decisions_total", {"label": "reject", "reject_reason": "low_confidence"}) == 1
    assert _value(m, "ewaste_late_decisions_total") == late
    assert _value(m, "ewaste_decision_latency_seconds_count") == 2 and _value(m, "ewaste_last_seq") == 2


def test_snapshot_feeds_per_source_series_and_registries_are_independent():
    snap = {"status": "ok", "sources": {"cam0": {"frames": 10, "dropped": 2, "reconnects": 1, "state": "running",
                                                   "fps": 25.0}},
            "queue_depths": {"cam0": 1, "publisher": 0}, "publisher": {"published": 7}}
    a, b = DaemonMetrics(lambda: snap), DaemonMetrics()
    text = a.render().decode()
    assert 'ewaste_frames_dropped_total{camera="cam0"} 2.0' in text
    assert 'ewaste_queue_depth{queue="publisher"} 0.0' in text and "ewaste_healthy 1.0" in text
    assert "ewaste_publisher_published_total 7.0" in text
    assert "cam0" not in b.render().decode()


def test_timed_classifier_observes_batches_and_passes_through():
    seen = []
    clf = TimedClassifier(StubClassifier(), lambda n, s: seen.append(n))
    import numpy as np

    out = clf.predict([np.zeros((8, 8, 3), np.uint8)] * 3)
    assert out.shape == (3, 2) and seen == [3] and clf.class_names == ("Mouse", "PCB") and clf.name == "stub"
