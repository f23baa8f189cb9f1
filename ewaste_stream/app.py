"""The live daemon: sources -> pipeline -> decision log + ZeroMQ publisher, with health.

Threads: one capture thread per camera (drop-oldest queues), the detector thread
(:class:`DetectorStage`: belt model and item mask of every frame, earliest frame first), the
pipeline loop (tracking, views, votes, decisions; the thread that calls ``run``, normally the
main thread), the pipeline's classifier thread, the publisher thread (owns the PUB socket),
the HTTP health thread (``/snapshot.jpg`` is drawn on the pipeline thread, when asked). The pipeline thread never touches a socket and never waits for a
subscriber. When the pipeline falls behind, the detector waits with no frame in hand (at most
``LIVE_ANALYSIS_AHEAD`` detected frames wait for the pipeline) and the capture queues drop
their oldest frames, counted.

Shutdown (SIGTERM/SIGINT, or every file source ended): stop capture, detect and run the
frames already queued, ``pipeline.flush`` (decide every item in flight), fsync the log, let
the publisher send what is queued (bounded by ``publish.drain_timeout_s``), exit 0. A second
signal interrupts the drain.
"""

from __future__ import annotations

import collections
import dataclasses
import secrets
import signal
import threading
import time
from typing import Any, Callable, Iterator

from loguru import logger

from .ahead import DONE, AheadStage
from .annotate import FrameGrabber, Overlay, overlay_jpeg
from .clock import Clock, MonotonicClock, StreamClock
from .config import Config
from .decision_log import JsonlDecisionLog
from .messages import REJECT_LABEL, Decision, Frame, StatusEvent, StatusKind
from .metrics import DaemonMetrics, HealthServer, TimedClassifier
from .publish import CurveServer, DecisionPublisher, DecisionSinks, PublisherOptions
from .sources import LIVE_ANALYSIS_AHEAD, FrameMux, LiveSource, SourceContext, open_live_source, open_reader

PipelineFactory = Callable[..., Any]  # Pipeline(config, classifier, boot_id, on_decision, on_status)
RECENT_ERROR_S = 10.0  # health stays "degraded" this long after a stage or sink error
BEHIND_WINDOW_S = 10.0  # "behind": frames dropped or decisions late within this many seconds
BEHIND_MIN_FRAMES = 30  # ... of at least this many frames captured (not the few dropped at start-up)


def _default_pipeline_factory() -> PipelineFactory:
    from .pipeline import Pipeline

    return Pipeline


@dataclasses.dataclass
class PeriodTally:
    """What the daemon's periodic summary line reports: decisions since the last line."""

    decisions: int = 0
    rejects: int = 0
    late: int = 0  # published after the actuator deadline
    oldest_s: float = 0.0  # the largest (clock at publish - line crossing)

    def add(self, d: Decision, now: float, late: bool) -> None:
        """Count ``d``, published at ``now`` (``late``: after its actuator deadline)."""
        self.decisions += 1
        self.rejects += d.label == REJECT_LABEL
        self.late += late
        self.oldest_s = max(self.oldest_s, now - d.t_cross)


@dataclasses.dataclass
class Behind:
    """Whether the pipeline is keeping up, over the last ``window_s``: the fraction of each
    camera's frames its queue dropped (at or over ``max_dropped``: behind) and the decisions
    published after their actuator deadline (any: behind). ``update`` is called with running
    totals; it keeps the readings of the window and returns the reasons, empty when keeping up."""

    max_dropped: float | None
    window_s: float = BEHIND_WINDOW_S
    # (t, {camera: (captured, dropped)}, late), the oldest one at or just before the window's start
    readings: collections.deque = dataclasses.field(default_factory=collections.deque)
    reasons: tuple[str, ...] = ()

    def update(self, now: float, cams: dict[str, tuple[int, int]], late: int) -> tuple[str, ...]:
        self.readings.append((now, cams, late))
        while len(self.readings) > 1 and self.readings[1][0] <= now - self.window_s:
            self.readings.popleft()  # the oldest kept one is the window's start
        _, before, late0 = self.readings[0]
        reasons = []
        for cam, (captured, dropped) in cams.items():
            c0, d0 = before.get(cam, (0, 0))
            n, k = captured - c0, dropped - d0
            if self.max_dropped is not None and n >= BEHIND_MIN_FRAMES and k >= self.max_dropped * n:
                reasons.append(f"camera {cam} dropped {k} of {n} frames in the last {self.window_s:.0f} s "
                               "(the pipeline is slower than the camera)")
        if late > late0:
            reasons.append(f"{late - late0} decision(s) published after their actuator deadline in the last "
                           f"{self.window_s:.0f} s")
        self.reasons = tuple(reasons)
        return self.reasons


class DetectorStage(AheadStage):
    """The daemon's detector thread: frames from ``mux`` (earliest first, so each camera's
    frames in order, as a detector must learn them) -> ``(frame, analyse(frame))`` for the
    pipeline thread, at most ``ahead`` of them waiting there (see :mod:`.ahead`: the thread
    never holds a frame while it waits, so when the pipeline falls behind the capture queues
    drop their oldest frames, counted, and the frame detected next is the newest one). A frame
    whose ``analyse`` raises goes to ``on_error`` and is skipped; the frames after it go on.
    ``analyse=None`` hands frames over with no analysis (the pipeline then detects)."""

    def __init__(self, mux: FrameMux, analyse: Callable[[Frame], Any] | None,
                 on_error: Callable[[Frame, Exception], None], ahead: int = LIVE_ANALYSIS_AHEAD) -> None:
        self.mux = mux
        self._finishing = threading.Event()  # the sources are closed: take what the mux holds, then end
        super().__init__(self._take_frame, analyse or (lambda frame: None), ahead=ahead, on_error=on_error,
                         wake=mux.wake, name="detector")

    def _take_frame(self, timeout: float) -> Frame | object | None:
        finishing = self._finishing.is_set()  # read before the get: a frame queued before finish() is still taken
        frame = self.mux.get(timeout)
        return DONE if frame is None and finishing else frame

    def finish(self) -> Iterator[tuple[Frame, Any]]:
        """Call after the sources are closed: every frame still queued, detected, in order."""
        self._finishing.set()
        self.mux.wake()
        return self.drain()


class Daemon:
    """One live run. ``start()`` opens everything (raises on a source/endpoint that cannot be
    opened), ``run()`` loops until ``request_stop()`` or all sources end, then drains."""

    def __init__(self, config: Config, classifier: Any, clock: Clock | None = None,
                 pipeline_factory: PipelineFactory | None = None, open_fn=open_reader,  # noqa: ANN001
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.boot_id = secrets.token_hex(8)
        self.clock = StreamClock(clock or MonotonicClock())
        self._wall = wall_clock
        self._stop = threading.Event()
        self._state = "starting"
        self._last_error_t: float | None = None
        self._drops_reported: dict[str, int] = {}  # {camera: frames its queue had dropped at the last 10-s line}
        self._ended: set[str] = set()
        self._next_housekeeping = 0.0
        self._next_drop_report = 10.0
        self._tally = PeriodTally()
        self._late_total = 0  # decisions published after their deadline, since boot
        self.behind = Behind(config.metrics.degraded_dropped_fraction)
        self._tally_lock = threading.Lock()  # summary_line may be asked for from another thread than the pipeline's
        self._summary_from = (0.0, {}, 0)  # (time, {camera: (captured, dropped)}, stage errors) at the last line
        self._next_summary = config.logging.summary_every_s or float("inf")
        self.stage_errors = 0
        self._error_lock = threading.Lock()
        self.last_seq = 0
        self.metrics = DaemonMetrics(self.snapshot)
        self.ctx = SourceContext(self.clock, self._on_status)
        self.sources: list[LiveSource] = [open_live_source(c, self.ctx, open_fn=open_fn) for c in config.cameras]
        self.mux = FrameMux([s.queue for s in self.sources])
        self.log = self._make_log()
        self.publisher = self._make_publisher()
        sinks = [("decision_log", self.log)] if self.log else []
        sinks += [("publisher", self.publisher)] if self.publisher else []
        sinks += [("metrics", self._observe)]
        self.sinks = DecisionSinks(sinks, self._on_status)
        factory = pipeline_factory or _default_pipeline_factory()
        timed = TimedClassifier(classifier, self.metrics.observe_batch)
        self.pipeline = factory(config, timed, self.boot_id, self._on_decision, self._on_status)
        self.overlay = Overlay(self.pipeline) if hasattr(self.pipeline, "last_seen") else None  # a stand-in has none
        self.snapshots = (FrameGrabber([c.id for c in config.cameras], overlay_jpeg(self.overlay))
                          if config.metrics.listen and config.metrics.snapshot else None)
        self.detector = DetectorStage(self.mux, getattr(self.pipeline, "analyse", None), self._detect_failed)
        self.http: HealthServer | None = None

    # ---- construction -------------------------------------------------------------------
    def _make_log(self) -> JsonlDecisionLog | None:
        p = self.config.publish
        if p.decisions_log is None:
            return None
        return JsonlDecisionLog(p.decisions_log, p.fsync, p.fsync_interval_s,
                                int(p.decisions_log_max_mb * (1 << 20)), p.decisions_log_keep, self.clock.clock.now)

    def _make_publisher(self) -> DecisionPublisher | None:
        p = self.config.publish
        if p.endpoint is None:
            return None
        curve = CurveServer(p.curve_server_secret, p.curve_allowed_clients) if p.curve_server_secret else None
        opts = PublisherOptions(hwm=p.hwm, heartbeat_s=p.heartbeat_s, queue_size=p.queue_size, curve=curve)
        pub = DecisionPublisher(p.endpoint, self.config.line, self.boot_id, opts, self.clock, self._on_status)
        pub.status_fn = self._heartbeat_status
        return pub

    # ---- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Open sources and endpoints. Raises ``SourceOpenError`` / ``PublishError`` / ``OSError``
        with a message naming the camera or endpoint; everything started is stopped again."""
        logger.info(f"boot {self.boot_id}: line {self.config.line}, {len(self.sources)} camera(s), "
                    f"config {self.config.sha256()}")
        try:
            if self.publisher is not None:
                self.publisher.start()
            if self.config.metrics.listen:
                host, _, port = self.config.metrics.listen.rpartition(":")
                self.http = HealthServer(host, int(port), self.metrics, self.snapshots).start()
            for src, cam in zip(self.sources, self.config.cameras):
                src.start(require_open=cam.on_open_failure == "exit")
                logger.info(f"camera {src.camera}: {src.spec.redacted()} ({src.spec.kind}, {src.fps:.1f} fps)")
            self.detector.start()
        except BaseException:
            self._close_all(drain=False)
            raise
        self._state = "running"

    def request_stop(self, reason: str = "") -> None:
        if not self._stop.is_set():
            logger.info(f"stopping{': ' + reason if reason else ''}; finishing items in flight")
        self._stop.set()
        self.mux.wake()

    def run(self) -> int:
        """The pipeline loop; returns the exit code (0 after a clean drain, 1 if the detector
        thread died: a bug, reported, with every item already in flight still decided)."""
        try:
            while not self._stop.is_set():
                item = self.detector.get(0.1)
                self._housekeeping()
                if item is not None:
                    self._process(*item)
                elif self.detector.failed is not None:
                    logger.opt(exception=self.detector.failed).critical(
                        f"stopping: the detector thread failed ({self.detector.failed!r}); deciding the items in "
                        "flight, exit 1 (a bug: please report it with this log)")
                    break
                elif all(s.finished for s in self.sources):
                    logger.info("all sources ended")
                    break
            self._shutdown()
        finally:
            self.detector.abort()  # a no-op after a clean drain; after a second signal it stops the thread
        return 1 if self.detector.failed is not None else 0

    def _process(self, frame: Frame, analysis: Any = None) -> None:
        try:
            if analysis is None:
                self.pipeline.process(frame)
            else:
                self.pipeline.process(frame, analysis=analysis)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the line
            self._stage_error("pipeline", frame, exc)
            return
        if self.snapshots is not None:
            self.snapshots.serve(frame)  # only when /snapshot.jpg asked for this camera

    def _detect_failed(self, frame: Frame, exc: Exception) -> None:
        self._stage_error("detector", frame, exc)  # on the detector's thread

    def _stage_error(self, stage: str, frame: Frame, exc: Exception) -> None:
        with self._error_lock:
            self.stage_errors += 1
            n = self.stage_errors
        self._last_error_t = frame.t
        if n <= 10 or n % 100 == 0:
            logger.opt(exception=exc).error(f"{stage} failed on {frame.camera} frame {frame.seq} "
                                            f"({n} errors so far); the frame is skipped")
        self.metrics.on_status(StatusEvent(StatusKind.STAGE_ERROR, stage, frame.t, str(exc)))

    def _housekeeping(self) -> None:
        now = self.clock()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + 0.25
        was = self.behind.reasons
        reasons = self.behind.update(now, self._frame_counts(), self._late_total)
        if reasons and not was:
            logger.warning("health degraded: " + "; ".join(reasons))
        elif was and not reasons:
            logger.info("keeping up again: no frame dropped over the limit and no late decision in the last "
                        f"{self.behind.window_s:.0f} s")
        for s in self.sources:
            s.check()
            if s.state == "ended" and s.camera not in self._ended:
                self._ended.add(s.camera)
                camera_ended = getattr(self.pipeline, "camera_ended", None)
                if camera_ended is not None and len(self._ended) < len(self.sources):
                    camera_ended(s.camera, now)  # decide from the other cameras from now on
        if self.log is not None:
            self.log.tick()
        if now >= self._next_summary:
            self._next_summary = now + (self.config.logging.summary_every_s or float("inf"))
            logger.info(self.summary_line(now))
        if now >= self._next_drop_report:
            self._next_drop_report = now + 10.0
            for cam, (_, dropped) in self._frame_counts().items():
                n = dropped - self._drops_reported.get(cam, 0)
                if n:
                    logger.info(f"camera {cam}: {n} frame(s) dropped in the last 10 s (pipeline slower than capture)")
                self._drops_reported[cam] = dropped

    def _shutdown(self) -> None:
        self._state = "stopping"
        for s in self.sources:
            s.close()
        left = 0
        for frame, analysis in self.detector.finish():
            self._process(frame, analysis)
            left += 1
        try:
            flushed = self.pipeline.flush(self.clock())
            logger.info(f"flushed {len(flushed)} item(s) in flight after {left} queued frame(s)")
        except Exception as exc:  # noqa: BLE001
            logger.opt(exception=exc).error(f"pipeline flush failed: {exc}")
        close = getattr(self.pipeline, "close", None)
        if close is not None:
            close()  # the pipeline's classifier thread
        if self.config.logging.summary_every_s:
            logger.info(self.summary_line(self.clock()))
        self._close_all(drain=True)
        pub = self.publisher.stats if self.publisher else None
        logger.info(f"stopped: last seq {self.last_seq}, boot {self.boot_id}, "
                    f"logged {self.log.written if self.log else 0}, published {pub.published if pub else 0}, "
                    f"frames {sum(s.frames_captured for s in self.sources)}, "
                    f"dropped {sum(s.queue.dropped for s in self.sources)}")

    def _close_all(self, drain: bool) -> None:
        for s in self.sources:
            s.close()
        if not drain:
            self.detector.abort()
        if self.publisher is not None and self.publisher.started:
            self.publisher.close(self.config.publish.drain_timeout_s if drain else 0.0)
        if self.log is not None:
            self.log.close()
        if self.http is not None:
            self.http.close()
            self.http = None

    def _frame_counts(self) -> dict[str, tuple[int, int]]:
        """{camera: (frames captured, frames its queue dropped)} since boot."""
        return {s.camera: (s.frames_captured, s.queue.dropped) for s in self.sources}

    def summary_line(self, now: float) -> str:
        """One line on the period since the last one (the tally starts again)."""
        t0, before, errors0 = self._summary_from
        with self._tally_lock:
            tally, self._tally = self._tally, PeriodTally()
        cams = self._frame_counts()
        self._summary_from = (now, cams, self.stage_errors)
        span = max(now - t0, 1e-9)
        frames = ", ".join(f"{cam} {c - before.get(cam, (0, 0))[0]} captured / {d - before.get(cam, (0, 0))[1]} dropped"
                           for cam, (c, d) in cams.items())
        rej = 100.0 * tally.rejects / tally.decisions if tally.decisions else 0.0
        return (f"last {span:.0f} s: {tally.decisions} decisions ({tally.decisions / span:.1f}/s), "
                f"{tally.rejects} rejected ({rej:.1f} %), {tally.late} late, oldest published "
                f"{1000 * tally.oldest_s:.0f} ms after the line; frames {frames}; "
                f"stage errors {self.stage_errors - errors0}; status {self.status()}")

    # ---- callbacks ----------------------------------------------------------------------
    def _on_decision(self, d: Decision) -> None:
        if d.wall_decided is None:
            d = dataclasses.replace(d, wall_decided=self._wall())
        self.last_seq = d.seq
        if self.overlay is not None:
            self.overlay.note((d,))
        self.sinks(d)

    def _observe(self, d: Decision) -> None:
        """The metrics sink: Prometheus and the summary line's tally, at one reading of the clock."""
        now = self.clock()
        late = self.metrics.on_decision(d, now)
        with self._tally_lock:
            self._tally.add(d, now, late)
            self._late_total += late

    def _on_status(self, ev: StatusEvent) -> None:
        self.metrics.on_status(ev)
        if ev.kind in (StatusKind.STAGE_ERROR, StatusKind.SINK_ERROR):
            self._last_error_t = ev.t
            logger.warning(f"{ev.kind.value} from {ev.source}: {ev.detail}")
        # sources log their losses; dropped frames are counted by the camera's queue (the 10-s line, the health)
        elif ev.kind not in (StatusKind.SOURCE_LOST, StatusKind.SOURCE_RECOVERED, StatusKind.FRAME_DROPPED):
            logger.info(f"{ev.kind.value} from {ev.source}: {ev.detail}")

    # ---- health -------------------------------------------------------------------------
    def status(self) -> str:
        if self._state != "running":
            return self._state
        if any(s.state != "running" for s in self.sources if s.state != "ended"):
            return "degraded"
        if self._last_error_t is not None and self.clock() - self._last_error_t < RECENT_ERROR_S:
            return "degraded"
        if self.behind.reasons:
            return "degraded"
        return "ok"

    def _heartbeat_status(self) -> tuple[str, dict[str, float], dict[str, int]]:
        return (self.status(), {s.camera: s.info()["fps"] for s in self.sources},
                {s.camera: len(s.queue) for s in self.sources})

    def snapshot(self) -> dict[str, Any]:
        sources = {s.camera: s.info() for s in self.sources}
        depths = {cam: info["queue_depth"] for cam, info in sources.items()}
        depths["detector"] = self.detector.depth
        if self.publisher is not None:
            depths["publisher"] = self.publisher.queue_depth
        pub = dataclasses.asdict(self.publisher.stats) if self.publisher else None
        if pub:
            pub.pop("lost_seqs", None)
            pub["endpoint"] = self.publisher.bound_endpoint
        try:
            pstats = self.pipeline.stats()
        except Exception as exc:  # noqa: BLE001
            pstats = {"error": str(exc)}
        return {"status": self.status(), "line": self.config.line, "boot_id": self.boot_id,
                "uptime_s": round(self.clock(), 3), "last_seq": self.last_seq, "behind": list(self.behind.reasons),
                "sources": sources,
                "queue_depths": depths, "publisher": pub, "decision_log": self.log.stats() if self.log else None,
                "stage_errors": self.stage_errors, "sink_errors": dict(self.sinks.errors), "pipeline": pstats}


def run_daemon(daemon: Daemon) -> int:
    """Start, install SIGTERM/SIGINT handlers (main thread), run, restore the handlers."""
    hits = {"n": 0}

    def handler(signum: int, _frame: Any) -> None:
        hits["n"] += 1
        if hits["n"] > 1:
            raise KeyboardInterrupt  # second signal: stop draining
        daemon.request_stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon.start()
        return daemon.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
