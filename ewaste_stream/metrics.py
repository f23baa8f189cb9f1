"""Health and Prometheus metrics over HTTP (default 127.0.0.1:9108).

- ``/metrics``: Prometheus text from this daemon's own ``CollectorRegistry`` (no global
  state, so tests and several daemons in one process do not collide).
- ``/healthz``: JSON (status, per-source state, last decision seq, queue depths, ...);
  HTTP 200 when ``ok``, 503 when ``degraded``, ``starting`` or ``stopping``.

Per-event values (decisions, their latency, inference batches, status events) are observed
as they happen; per-source and queue values are read from a snapshot at scrape time.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs

import numpy as np
from loguru import logger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .messages import Decision, StatusEvent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Snapshot = Callable[[], dict[str, Any]]  # the /healthz document


def published_late(d: Decision, now: float | None = None) -> bool:
    """The decision was made, or (live, ``now``: stream seconds when it leaves the pipeline)
    published, after its actuator deadline: the item has passed the jet."""
    return d.deadline is not None and max(d.t_decided, now if now is not None else 0.0) > d.deadline


class DaemonMetrics:
    """All metrics of one daemon, in one registry. ``snapshot`` feeds the per-source gauges."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.snapshot = snapshot or (lambda: {})
        r = self.registry
        self.decisions = Counter("ewaste_decisions", "Decisions made", ["label", "reject_reason"], registry=r)
        self.late = Counter("ewaste_late_decisions", "Decisions made after their actuator deadline", registry=r)
        buckets = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
        self.latency = Histogram("ewaste_decision_latency_seconds", "t_decided - t_cross (stream seconds)",
                                 buckets=buckets, registry=r)
        self.age = Histogram("ewaste_decision_age_seconds", "Live: clock at publish time - t_cross "
                             "(includes processing backlog)", buckets=buckets, registry=r)
        self.batch_size = Histogram("ewaste_inference_batch_size", "Crops per classifier call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.infer_latency = Histogram("ewaste_inference_latency_seconds", "Classifier call duration (wall)",
                                       buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0), registry=r)
        self.status_events = Counter("ewaste_status_events", "Status events", ["kind", "source"], registry=r)
        self.last_seq = Gauge("ewaste_last_seq", "seq of the last decision made this boot", registry=r)
        r.register(_SnapshotCollector(lambda: self.snapshot()))

    def on_decision(self, d: Decision, now: float | None = None) -> bool:
        """``now``: live stream seconds when the decision leaves the pipeline (None in replay).
        Returns whether it was published late (:func:`published_late`)."""
        self.decisions.labels(d.label, d.reject_reason.value if d.reject_reason else "").inc()
        self.latency.observe(max(0.0, d.t_decided - d.t_cross))
        if now is not None:
            self.age.observe(max(0.0, now - d.t_cross))
        late = published_late(d, now)
        if late:
            self.late.inc()
        self.last_seq.set(d.seq)
        return late

    def on_status(self, ev: StatusEvent) -> None:
        self.status_events.labels(ev.kind.value, ev.source).inc()

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.infer_latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _SnapshotCollector:
    """Per-source and queue values, read from the health snapshot at scrape time."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def describe(self) -> list:
        return []

    def collect(self):  # noqa: ANN201
        snap = self._snapshot()
        sources = snap.get("sources", {})
        families = {
            "frames": CounterMetricFamily("ewaste_frames_captured", "Frames captured", labels=["camera"]),
            "dropped": CounterMetricFamily("ewaste_frames_dropped", "Frames dropped (queue full, oldest first)",
                                           labels=["camera"]),
            "reconnects": CounterMetricFamily("ewaste_source_reconnects", "Successful reconnects", labels=["camera"]),
            "up": GaugeMetricFamily("ewaste_source_up", "1 when the source delivers frames", labels=["camera"]),
            "fps": GaugeMetricFamily("ewaste_source_fps", "Measured capture rate", labels=["camera"]),
        }
        for cam, info in sources.items():
            families["frames"].add_metric([cam], info.get("frames", 0))
            families["dropped"].add_metric([cam], info.get("dropped", 0))
            families["reconnects"].add_metric([cam], info.get("reconnects", 0))
            families["up"].add_metric([cam], 1.0 if info.get("state") == "running" else 0.0)
            families["fps"].add_metric([cam], info.get("fps", 0.0))
        yield from families.values()
        depth = GaugeMetricFamily("ewaste_queue_depth", "Items waiting in a queue", labels=["queue"])
        for name, n in snap.get("queue_depths", {}).items():
            depth.add_metric([name], n)
        yield depth
        pub = snap.get("publisher") or {}
        for key, help_ in (("published", "Decisions sent on ZeroMQ"), ("send_errors", "ZeroMQ send errors"),
                           ("send_again", "ZeroMQ sends refused (zmq.Again)"),
                           ("queue_full", "Decisions not published: publisher queue full")):
            fam = CounterMetricFamily(f"ewaste_publisher_{key}", help_)
            fam.add_metric([], pub.get(key, 0))
            yield fam
        logged = CounterMetricFamily("ewaste_decisions_logged", "Decisions appended to the JSONL log")
        logged.add_metric([], (snap.get("decision_log") or {}).get("written", 0))
        yield logged
        ignored = CounterMetricFamily("ewaste_regions_ignored", "New regions of the detector's mask the tracker "
                                      "left out, per frame, by reason (replay --annotate draws them)", labels=["reason"])
        pipe = snap.get("pipeline") or {}
        for reason, n in (pipe.get("ignored_regions") or {}).items():
            ignored.add_metric([reason], n)
        yield ignored
        views = CounterMetricFamily("ewaste_views", "Item views by what became of them: classified, skipped (the item "
                                    "was already sure), mirrored (classified again mirrored: batching.flip_below)",
                                    labels=["outcome"])
        for outcome, key in (("classified", "views"), ("skipped", "views_skipped"), ("mirrored", "views_flipped")):
            views.add_metric([outcome], pipe.get(key, 0))
        yield views
        up = GaugeMetricFamily("ewaste_healthy", "1 when /healthz says ok")
        up.add_metric([], 1.0 if snap.get("status") == "ok" else 0.0)
        yield up


class TimedClassifier:
    """Wraps a ``Classifier`` to observe batch size and inference latency (wall clock: a
    measurement, not logic). Everything else is passed through."""

    def __init__(self, inner, observe: Callable[[int, float], None]) -> None:  # noqa: ANN001
        self._inner = inner
        self._observe = observe

    def __getattr__(self, name: str):  # noqa: ANN204 (class_names, name, sha256, info, ...)
        return getattr(self._inner, name)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._inner.class_names

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def sha256(self) -> str:
        return self._inner.sha256

    def predict(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        t0 = time.perf_counter()
        out = self._inner.predict(crops)
        self._observe(len(crops), time.perf_counter() - t0)
        return out


class HealthServer:
    """``/healthz`` + ``/metrics`` on a small threaded HTTP server (own thread); with ``snapshots``
    (an ``annotate.FrameGrabber``) also ``/snapshot.jpg?camera=ID``."""

    def __init__(self, host: str, port: int, metrics: DaemonMetrics, snapshots: Any = None) -> None:
        handler = _make_handler(metrics, snapshots)
        try:
            self._httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise OSError(f"metrics endpoint {host}:{port}: {exc.strerror or exc} "
                          "(port in use? set metrics.listen or --metrics)") from exc
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="health-http", daemon=True)

    def start(self) -> "HealthServer":
        self._thread.start()
        logger.info(f"health and metrics on http://{self.host}:{self.port}/healthz and /metrics")
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(2.0)


SNAPSHOT_WAIT_S = 2.0  # /snapshot.jpg waits this long for the camera's next processed frame


def _make_handler(metrics: DaemonMetrics, snapshots: Any = None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            path, _, query = self.path.partition("?")
            try:
                if path == "/metrics":
                    self._reply(200, metrics.render(), CONTENT_TYPE)
                elif path in ("/healthz", "/health"):
                    snap = metrics.snapshot()
                    code = 200 if snap.get("status") == "ok" else 503
                    self._reply(code, json.dumps(snap, indent=1, default=str).encode(), "application/json")
                elif path == "/snapshot.jpg":
                    self._snapshot(parse_qs(query).get("camera", [None])[0])
                else:
                    self._reply(404, b"try /healthz, /metrics or /snapshot.jpg?camera=ID\n", "text/plain")
            except Exception as exc:  # noqa: BLE001 - a scrape must never take the daemon down
                logger.error(f"health endpoint {path}: {exc}")
                self._reply(500, f"error: {exc}\n".encode(), "text/plain")

        def _snapshot(self, camera: str | None) -> None:
            if snapshots is None:
                self._reply(404, b"snapshots are off (metrics.snapshot: false)\n", "text/plain")
                return
            camera = camera or snapshots.cameras[0]
            try:
                jpeg = snapshots.request(camera, SNAPSHOT_WAIT_S)
            except KeyError:
                self._reply(404, f"no camera {camera!r}; cameras: {', '.join(snapshots.cameras)}\n".encode(),
                            "text/plain")
                return
            if jpeg is None:
                self._reply(503, f"no frame from {camera} processed within {SNAPSHOT_WAIT_S:g} s (camera down, "
                                 "or the daemon stopping)\n".encode(), "text/plain")
            else:
                self._reply(200, jpeg, "image/jpeg")

        def _reply(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: scrapes every few seconds
            logger.debug("http " + fmt % args)

    return Handler
