"""tools/soak.py's reading of the daemon's metrics: how old decisions were when published, batch sizes."""

from __future__ import annotations

from ewaste_stream.metrics import DaemonMetrics
from ewaste_stream.testing import load_tool, make_decision


def test_soak_counts_decisions_by_age_at_publish_from_the_daemons_histogram():
    soak = load_tool("soak")
    m = DaemonMetrics()
    for i, age in enumerate((0.004, 0.03, 0.03, 0.15, 0.6), start=1):
        d = make_decision(i)
        m.on_decision(d, now=d.t_cross + age)
    ages = soak.age_counts(soak.parse_metrics(m.render().decode()))
    assert ages["<=0.01"] == 1 and ages["<=0.05"] == 3 and ages["<=0.2"] == 4 and ages["<=0.5"] == 4
    assert ages["<=0.75"] == ages["all"] == 5
    assert soak.metric_sum(soak.parse_metrics(m.render().decode()), "ewaste_late_decisions_total") == 1  # deadline t+1


def test_soak_counts_classifier_calls_by_batch_size():
    soak = load_tool("soak")
    m = DaemonMetrics()
    for size in (1, 3, 3, 12):
        m.observe_batch(size, 0.01)
    sizes = soak.bucket_counts(soak.parse_metrics(m.render().decode()), "ewaste_inference_batch_size")
    assert sizes["<=1"] == 1 and sizes["<=2"] == 1 and sizes["<=4"] == 3 and sizes["<=8"] == 3 and sizes["<=16"] == 4
    assert sizes["all"] == 4
