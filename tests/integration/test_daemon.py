"""The live daemon end to end with a stub pipeline: file source that appears late, disappears
and comes back; health/metrics; SIGTERM drain in a subprocess; start-up errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ewaste_stream.app import Daemon
from ewaste_stream.cli import main
from ewaste_stream.config import load_config
from ewaste_stream.decision_log import read_decisions
from ewaste_stream.subscriber import DecisionSubscriber
from ewaste_stream.testing import StubClassifier, StubPipeline, write_test_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_logging():
    """cli.main() points loguru at this test's captured stderr; point it back afterwards."""
    yield
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="INFO")


def _config(tmp_path: Path, video: Path, **camera):
    cam = {"id": "cam0", "source": str(video), "loop": True, "fps": 100.0, "queue_size": 64,
           "on_open_failure": "retry", "reconnect_min_s": 0.05, "reconnect_max_s": 0.2, **camera}
    return load_config(None, {
        "cameras": [cam], "logging": {"file": None},
        "publish": {"endpoint": "tcp://127.0.0.1:0", "heartbeat_s": 0.05, "decisions_log": str(tmp_path / "d.jsonl"),
                    "fsync": "always"},
        "metrics": {"listen": "127.0.0.1:0"},
    })


def _until(cond, limit_s: float = 20.0, step: float = 0.02) -> bool:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return False


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_daemon_source_late_gone_and_back_with_health(tmp_path):
    video = tmp_path / "belt.mp4"
    staged = write_test_video(tmp_path / "staged.mp4", frames=10)
    daemon = Daemon(_config(tmp_path, video), StubClassifier(), pipeline_factory=StubPipeline)
    daemon.start()  # the file is not there yet: on_open_failure retry keeps trying
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    sub = DecisionSubscriber(daemon.publisher.bound_endpoint, "line1")
    base = f"http://127.0.0.1:{daemon.http.port}"
    seqs: list[int] = []

    def pump() -> None:
        while (r := sub.recv(0.01)) is not None:
            if r.decision is not None:
                seqs.append(r.decision.seq)
    try:
        assert sub.wait_for_heartbeat(10.0) is not None  # subscribed before the first decision
        code, body = _get(base + "/healthz")
        assert code == 503 and json.loads(body)["sources"]["cam0"]["state"] != "running"
        os.rename(staged, video)  # camera appears
        assert _until(lambda: (pump(), len(seqs) >= 10)[1])
        assert _get(base + "/healthz")[0] == 200
        os.rename(video, staged)  # camera disappears: at the end of the loop it cannot reopen
        assert _until(lambda: (pump(), daemon.sources[0].state == "reconnecting")[1])
        assert _get(base + "/healthz")[0] == 503
        n_gone = len(seqs)
        os.rename(staged, video)  # and comes back
        assert _until(lambda: (pump(), len(seqs) >= n_gone + 10)[1])
        metrics = _get(base + "/metrics")[1].decode()
    finally:
        daemon.request_stop("test")
        runner.join(20)
        pump()
        sub.close()
    assert not runner.is_alive()
    logged = [r["seq"] for r in read_decisions(tmp_path / "d.jsonl")]
    assert logged == list(range(1, len(logged) + 1)) and seqs == logged  # nothing lost on either side
    assert daemon.sources[0].reconnects >= 1
    assert re.search(r'ewaste_source_reconnects_total\{camera="cam0"\} [1-9]', metrics)
    assert re.search(r'ewaste_frames_captured_total\{camera="cam0"\} [1-9]', metrics)
    assert 'ewaste_decisions_total{label="Mouse",reject_reason=""}' in metrics


@pytest.mark.parametrize("snapshot", [True, False])
def test_daemon_serves_the_latest_frame_with_its_overlay(tmp_path, snapshot):
    """``/snapshot.jpg``: the camera's next processed frame with the pipeline's overlay (the real
    pipeline on the sample video: the cyan decision line at 0.75 of the width); an unknown camera
    is a 404 naming the cameras; ``metrics.snapshot: false`` turns it off."""
    import cv2
    import numpy as np

    video = REPO / "samples" / "belt_val_demo.cam0.mp4"
    cfg = _config(tmp_path, video)
    cfg = cfg.model_copy(update={"metrics": cfg.metrics.model_copy(update={"snapshot": snapshot})})
    daemon = Daemon(cfg, StubClassifier())
    daemon.start()
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    base = f"http://127.0.0.1:{daemon.http.port}"
    try:
        assert _until(lambda: daemon.last_seq >= 3, 60)
        code, body = _get(base + "/snapshot.jpg")
        other = _get(base + "/snapshot.jpg?camera=nope")
    finally:
        daemon.request_stop("test")
        runner.join(30)
    if not snapshot:
        assert code == 404 and b"metrics.snapshot: false" in body
        return
    assert code == 200
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    w = int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_WIDTH))
    assert img.shape[1] == w
    col = img[:, int(0.75 * w) - 3:int(0.75 * w) + 4].astype(int)  # the line, drawn in cyan (BGR 255, 255, 0)
    cyan = (col[..., 0] > 180) & (col[..., 1] > 180) & (col[..., 2] < 90)
    assert cyan.any(axis=1).mean() > 0.8
    assert other[0] == 404 and b"cameras: cam0" in other[1]


class _DetectorFailsOnFrame3(StubPipeline):
    """Records which thread detects; frame 3's detection raises."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.threads: set[str] = set()
        self.main_thread = ""

    def analyse(self, frame, small=None):  # noqa: ANN001, ANN201
        self.threads.add(threading.current_thread().name)
        if frame.seq == 3:
            raise ValueError("detector broke on this frame")
        return super().analyse(frame, small)

    def process(self, frame, small=None, analysis=None):  # noqa: ANN001, ANN201
        self.main_thread = threading.current_thread().name
        return super().process(frame, small, analysis)


def test_daemon_detects_on_its_own_thread_and_skips_a_frame_whose_detection_fails(tmp_path):
    video = write_test_video(tmp_path / "belt.mp4", frames=10)
    daemon = Daemon(_config(tmp_path, video, loop=False), StubClassifier(), pipeline_factory=_DetectorFailsOnFrame3)
    daemon.start()
    assert daemon.run() == 0  # runs until the file ends, then drains
    pipe = daemon.pipeline
    assert pipe.threads == {"detector"} and pipe.main_thread == threading.current_thread().name
    assert daemon.stage_errors == 1 and daemon.detector.processed == 9
    assert pipe.frames == 9 and pipe.mismatched == 0  # every other frame run, each with its own analysis
    logged = [r["seq"] for r in read_decisions(tmp_path / "d.jsonl")]
    assert logged == [1, 2, 3, 4, 5]  # 9 frames, one decision per two, the last item flushed


class _DetectorDiesOnFrame5(StubPipeline):
    def analyse(self, frame, small=None):  # noqa: ANN001, ANN201
        if frame.seq == 5:
            raise SystemExit("not an Exception: escapes the per-frame handler, as a bug in the stage would")
        return super().analyse(frame, small)


def test_daemon_whose_detector_thread_dies_decides_what_it_has_and_exits_1(tmp_path):
    video = write_test_video(tmp_path / "belt.mp4", frames=10)
    daemon = Daemon(_config(tmp_path, video, loop=False), StubClassifier(), pipeline_factory=_DetectorDiesOnFrame5)
    daemon.start()
    assert daemon.run() == 1
    assert isinstance(daemon.detector.failed, SystemExit)
    assert daemon.pipeline.frames == 5  # frames 0-4
    logged = [r["seq"] for r in read_decisions(tmp_path / "d.jsonl")]
    assert logged == [1, 2, 3]  # two made while running, the pending item flushed at the end


_STUB_DAEMON = """
import sys
from ewaste_stream.app import Daemon, run_daemon
from ewaste_stream.config import load_config
from ewaste_stream.log import setup_logging
from ewaste_stream.testing import StubClassifier, StubPipeline

setup_logging()
cfg = load_config(sys.argv[1])
sys.exit(run_daemon(Daemon(cfg, StubClassifier(), pipeline_factory=StubPipeline)))
"""


@pytest.mark.slow
def test_sigterm_mid_stream_flushes_everything_and_exits_0(tmp_path):
    video = write_test_video(tmp_path / "belt.mp4", frames=10)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"cameras:\n  - {{id: cam0, source: '{video}', loop: true, fps: 100}}\n"
                   f"publish: {{endpoint: 'tcp://127.0.0.1:0', heartbeat_s: 0.05, decisions_log: '{tmp_path}/d.jsonl'}}\n"
                   "metrics: {listen: null}\nlogging: {file: null}\n")
    proc = subprocess.Popen([sys.executable, "-c", _STUB_DAEMON, str(cfg)], stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        assert _until(lambda: any("publishing decisions on" in x for x in lines))
        endpoint = re.search(r"publishing decisions on (\S+)", "".join(lines)).group(1)
        sub = DecisionSubscriber(endpoint, "line1")
        seqs: list[int] = []
        hb = sub.wait_for_heartbeat(10.0)
        assert hb is not None
        while len(seqs) < 30:
            r = sub.recv(5.0)
            assert r is not None
            if r.decision is not None:
                seqs.append(r.decision.seq)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        while (r := sub.recv(1.0)) is not None:  # what was published before exit is still arriving
            if r.decision is not None:
                seqs.append(r.decision.seq)
        sub.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    assert rc == 0, "".join(lines[-20:])
    logged = [r["seq"] for r in read_decisions(tmp_path / "d.jsonl")]
    assert logged == list(range(1, len(logged) + 1))
    assert seqs == list(range(seqs[0], logged[-1] + 1))  # every decision up to the last one made was published
    assert any("flushed" in x for x in lines) and any("stopped: last seq" in x for x in lines)


def test_run_names_the_camera_that_cannot_be_opened(tmp_path, capsys, monkeypatch):
    import ewaste_stream.app
    import ewaste_stream.model

    monkeypatch.setattr(ewaste_stream.model, "load_classifier", lambda *a, **k: StubClassifier())
    monkeypatch.setattr(ewaste_stream.app, "_default_pipeline_factory", lambda: StubPipeline)
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("cameras:\n  - {id: cam7, source: /dev/video9}\nmetrics: {listen: null}\nlogging: {file: null}\n"
                   "publish: {endpoint: null, decisions_log: null}\n")
    rc = main(["run", "--config", str(cfg), "--model", str(model)])
    err = capsys.readouterr().err
    assert rc == 1 and "camera 'cam7': cannot open source '/dev/video9'" in err, err


@pytest.mark.parametrize("args, phrase", [
    (["--source", "rtps://x/y"], "cameras[0].source: unknown URL scheme"),
    (["--metrics", "nope"], "metrics.listen"),
    (["--publish", "localhost"], "publish.endpoint"),
])
def test_run_bad_flags_exit_2_naming_the_key(tmp_path, capsys, args, phrase):
    assert main(["run", "--config", str(REPO / "config" / "default.yaml"), *args]) == 2
    err = capsys.readouterr().err
    assert phrase in err and "(command line)" in err


def test_network_stream_that_ends_is_reconnected(tmp_path):
    """A real OpenCV/FFmpeg network source (HTTP) whose stream ends counts as lost and is
    reopened with back-off; frames keep their per-camera seq across the reconnect."""
    import functools
    import http.server

    from ewaste_stream.clock import MonotonicClock, StreamClock
    from ewaste_stream.messages import StatusKind
    from ewaste_stream.sources import LivePolicy, LiveSource, SourceContext, parse_source

    write_test_video(tmp_path / "s.mp4", frames=8)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    events: list = []
    src = LiveSource("net0", parse_source(f"http://127.0.0.1:{srv.server_address[1]}/s.mp4"),
                     LivePolicy(queue_size=64, reconnect_min_s=0.05, reconnect_max_s=0.1),
                     SourceContext(StreamClock(MonotonicClock()), events.append))
    try:
        src.start()
        frames = []
        it = src.frames()
        while len(frames) < 20:
            frames.append(next(it))
    finally:
        src.close()
        srv.shutdown()
        srv.server_close()
    assert [f.seq for f in frames] == list(range(20))
    kinds = [e.kind for e in events]
    assert StatusKind.SOURCE_LOST in kinds and StatusKind.SOURCE_RECOVERED in kinds and src.reconnects >= 2


@pytest.mark.slow
def test_cli_run_real_pipeline_sigterm_drains(tmp_path):
    """`ewaste-stream run` (real Pipeline, tiny ONNX model) on the looping sample video with a
    subscriber attached before the first decision: SIGTERM -> exit 0, every logged decision
    was published and received, consecutive seq."""
    pytest.importorskip("ewaste_stream.pipeline")
    from ewaste_stream.model.small_cnn import tiny_model_folder

    video = REPO / "samples" / "belt_val_demo.cam0.mp4"
    if not video.exists():
        pytest.skip("sample video missing")
    model = tiny_model_folder(tmp_path / "m")
    staged, live = tmp_path / "staged.mp4", tmp_path / "belt.mp4"
    staged.write_bytes(video.read_bytes())
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{dir: '{model}', threads: 1}}\n"
                   f"cameras:\n  - {{id: cam0, source: '{live}', loop: true, on_open_failure: retry, "
                   "reconnect_min_s: 0.05, reconnect_max_s: 0.1}\n"
                   f"publish: {{endpoint: 'tcp://127.0.0.1:0', heartbeat_s: 0.1, decisions_log: '{tmp_path}/d.jsonl'}}\n"
                   f"metrics: {{listen: null}}\nlogging: {{file: null}}\n")
    proc = subprocess.Popen(["ewaste-stream", "run", "--config", str(cfg)], stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    seqs: list[int] = []
    try:
        assert _until(lambda: proc.poll() is not None or any("publishing decisions on" in x for x in lines), 60)
        assert proc.poll() is None, "".join(lines)
        endpoint = re.search(r"publishing decisions on (\S+)", "".join(lines)).group(1)
        sub = DecisionSubscriber(endpoint, "line1")
        assert sub.wait_for_heartbeat(20.0) is not None
        os.rename(staged, live)  # the camera "appears" only now: nothing was decided before
        end = time.monotonic() + 120
        while len(seqs) < 10 and time.monotonic() < end:
            r = sub.recv(1.0)
            if r is not None and r.decision is not None:
                seqs.append(r.decision.seq)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        while (r := sub.recv(1.0)) is not None:
            if r.decision is not None:
                seqs.append(r.decision.seq)
        sub.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, "".join(lines[-30:])
    logged = [r["seq"] for r in read_decisions(tmp_path / "d.jsonl")]
    assert len(logged) >= 10 and logged == list(range(1, len(logged) + 1))
    assert seqs == logged, "".join(lines[-30:])
