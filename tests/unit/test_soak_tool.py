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


def test_soak_counts_the_episodes_the_daemon_fell_behind():
    soak = load_tool("soak")
    log = "\n".join([
        "2026-12-07 00:37:47 WARNING ewaste_stream.app health degraded: 1 decision(s) published after their actuator "
        "deadline in the last 10 s",
        "2026-12-07 00:38:06 INFO    ewaste_stream.app keeping up again: no frame dropped over the limit and no late",
        "2026-12-07 00:39:09 WARNING ewaste_stream.app health degraded: camera cam0 dropped 200 of 600 frames in the "
        "last 10 s (the pipeline is slower than the camera); 3 decision(s) published after their actuator deadline",
        "2026-12-07 00:39:10 INFO    ewaste_stream.app last 60 s: ... status degraded",
    ])
    assert soak.behind_episodes(log) == {"episodes": 2, "frames_dropped": 1, "late_decisions": 2}
    assert soak.behind_episodes("") == {"episodes": 0, "frames_dropped": 0, "late_decisions": 0}


def test_soak_reads_a_process_cpu_time_and_reports_the_daemons_share_per_minute():
    import os

    soak = load_tool("soak")
    t0 = soak.cpu_s(os.getpid())
    sum(i * i for i in range(300_000))  # some CPU
    assert t0 is not None and soak.cpu_s(os.getpid()) > t0
    assert soak.cpu_s(2 ** 30) is None  # no such process
    # (seconds since launch, CPU s): 150 % of a core from 30 s on, after a start-up that cost 20 s
    trace = [(0.0, 0.0), (30.0, 20.0)] + [(30.0 + 10 * k, 20.0 + 15.0 * k) for k in range(1, 10)]
    share = soak.cpu_share(trace, after_s=30.0)
    assert share["mean_after_warmup"] == 150.0
    assert share["by_minute"] == [round(100 * 65.0 / 60.0, 1), 150.0]  # 0..60 s: 65 CPU-s with the start-up


def test_soak_reads_the_whole_machines_busy_cpu_time():
    soak = load_tool("soak")
    b0 = soak.machine_busy_s()
    sum(i * i for i in range(300_000))  # some CPU
    b1 = soak.machine_busy_s()
    assert b0 is not None and b1 is not None and b1 > b0
    # the two counters round apart: a difference a little under zero is reported as 0
    share = {"mean_after_warmup": -0.4, "by_minute": [2.4, -1.1], "cores": 2}
    assert soak._at_least_zero(share) == {"mean_after_warmup": 0.0, "by_minute": [2.4, 0.0], "cores": 2}
    assert soak._at_least_zero({**share, "mean_after_warmup": None})["mean_after_warmup"] is None
