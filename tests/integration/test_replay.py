"""`ewaste-stream replay` and `replay_files`: determinism, errors, annotation, the sample video."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ewaste_stream.cli import main
from ewaste_stream.config import Config, load_config
from ewaste_stream.protocol import decode_decision, encode_decision
from ewaste_stream.messages import Frame
from ewaste_stream.replay import ReplayError, ReplayHooks, ReplayOptions, analysed, camera_config, replay_files
from ewaste_stream.synthetic import ColourClassifier, SynthBelt, SynthItem

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "belt_val_demo"
W, H, FPS = 640, 360, 30.0


def _items(n: int = 10) -> list[SynthItem]:
    out, x = [], -60.0
    for i in range(n):
        out.append(SynthItem(i + 1, cx=x, cy=70.0 + 110 * (i % 3), w=70, h=50, angle=15.0 * i, cls=i % 5))
        if i % 3 == 2:
            x -= 120.0
    return out


def write_video(path: Path, frames: int = 90, items=None) -> Path:
    belt = SynthBelt(W, H, seed=2, speed=lambda k: 12.0)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    for k in range(frames):
        vw.write(belt.frame(k, _items() if items is None else items)[0])
    vw.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "belt.cam0.mp4")


def _cfg() -> Config:
    return Config.model_validate({"detector": {"min_area": 300}})


def test_replay_twice_gives_identical_decisions(video):
    runs = []
    for _ in range(2):
        got = []
        s = replay_files([video], _cfg(), ColourClassifier(),
                         ReplayHooks(on_decision=lambda d: got.append(encode_decision(d))))
        runs.append(got)
        assert s.frames == {"cam0": 90} and s.decisions == len(got) and not s.errors
    assert len(runs[0]) >= 7 and runs[0] == runs[1]
    first = decode_decision(runs[0][0])
    assert first.boot_id.startswith("replay-") and first.wall_decided is None


def test_cli_replay_writes_decisions_and_summary(video, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("ewaste_stream.commands.replay._load_model", lambda cfg: ColourClassifier())
    out, summary, ann = tmp_path / "d.jsonl", tmp_path / "s.json", tmp_path / "a.mp4"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("detector:\n  min_area: 300\n")
    rc = main(["replay", str(video), "--config", str(cfg), "--out", str(out), "--summary-json", str(summary),
               "--annotate", str(ann)])
    assert rc == 0
    lines = out.read_text().splitlines()
    assert lines and all(decode_decision(x).seq == i + 1 for i, x in enumerate(lines))
    text = capsys.readouterr().out
    assert "items:" in text and "decision latency" in text and "real time" in text
    s = json.loads(summary.read_text())
    assert s["decisions"] == len(lines) and s["frames"] == {"cam0": 90}
    cap = cv2.VideoCapture(str(ann))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 90
    cap.release()


def test_cli_replay_set_changes_one_key_over_the_config(video, tmp_path, monkeypatch, capsys):
    """``--set`` goes over ``--config``: every item rejected at a confidence no vote reaches."""
    monkeypatch.setattr("ewaste_stream.commands.replay._load_model", lambda cfg: ColourClassifier())
    cfg = tmp_path / "c.yaml"
    cfg.write_text("detector:\n  min_area: 300\nvote:\n  min_confidence: 0.5\n")
    labels = {}
    for name, extra in (("plain", []), ("strict", ["--set", "vote.min_confidence=1.0", "--set", "vote.min_margin=1"])):
        out = tmp_path / f"{name}.jsonl"
        assert main(["replay", str(video), "--config", str(cfg), "--out", str(out), *extra]) == 0
        labels[name] = [decode_decision(x).label for x in out.read_text().splitlines()]
    assert len(labels["plain"]) == len(labels["strict"]) >= 7  # the same items, tracked the same
    assert any(lab != "reject" for lab in labels["plain"]) and set(labels["strict"]) == {"reject"}


@pytest.mark.parametrize("setting, code, needle", [
    ("vote.min_confidance=0.7", 2, "did you mean 'min_confidence'"),  # the key is named, nothing runs
    ("vote.min_confidence=2", 2, "vote.min_confidence"),
    ("vote", 2, "give SECTION.KEY=VALUE"),  # refused by the argument parser
])
def test_cli_replay_bad_set_is_refused_before_anything_runs(video, tmp_path, monkeypatch, capsys, setting, code,
                                                             needle):
    monkeypatch.setattr("ewaste_stream.commands.replay._load_model", lambda cfg: pytest.fail("model loaded"))
    out = tmp_path / "d.jsonl"
    try:
        rc = main(["replay", str(video), "--set", setting, "--out", str(out)])
    except SystemExit as exc:  # argparse
        rc = exc.code
    assert rc == code and needle in capsys.readouterr().err and not out.exists()


def test_cli_replay_logs_and_draws_the_regions_the_tracker_left_out(video, tmp_path, monkeypatch, capsys):
    """With every item too faint for the tracker (tracker.min_contrast far above the items' contrast),
    nothing is decided, and ``--ignored-log``, the summary and ``--annotate`` say where and why."""
    monkeypatch.setattr("ewaste_stream.commands.replay._load_model", lambda cfg: ColourClassifier())
    out, log, ann = tmp_path / "d.jsonl", tmp_path / "ignored.jsonl", tmp_path / "a.mp4"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("detector:\n  min_area: 300\ntracker:\n  min_contrast: 500\n  isolated_min_contrast: null\n")
    assert main(["replay", str(video), "--config", str(cfg), "--out", str(out), "--ignored-log", str(log),
                 "--annotate", str(ann)]) == 0
    assert out.read_text() == ""
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert rows and all(r["camera"] == "cam0" for r in rows) and [r["seq"] for r in rows] == sorted({r["seq"] for r in rows})
    faint = [(r["seq"], g["bbox"]) for r in rows for g in r["regions"] if g["reason"] == "faint"]
    assert len(faint) >= 100  # ten items, each in view for many frames
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if x.startswith("regions the tracker left out"))
    assert f" faint {len(faint)}," in line  # the summary counts what the log has
    seq, (x0, y0, x1, y1) = faint[len(faint) // 2]  # drawn in magenta on that frame of the annotated video
    cap = cv2.VideoCapture(str(ann))
    cap.set(cv2.CAP_PROP_POS_FRAMES, seq)
    ok, img = cap.read()
    cap.release()
    edge = img[int(y0), int(x0) + 3:int(x1) - 3].astype(int)  # the box's top side
    assert ok and ((edge[:, 0] > 150) & (edge[:, 1] < 110) & (edge[:, 2] > 150)).mean() > 0.5


@pytest.mark.parametrize("make,needle", [
    (lambda p: p, "not found"),
    (lambda p: (p.write_bytes(b"\x00not a video" * 100), p)[1], "cannot decode"),
])
def test_cli_replay_bad_video_names_the_file(tmp_path, monkeypatch, capsys, make, needle):
    monkeypatch.setattr("ewaste_stream.commands.replay._load_model", lambda cfg: ColourClassifier())
    bad = make(tmp_path / "bad.mp4")
    rc = main(["replay", str(bad)])
    err = capsys.readouterr().err
    assert rc == 1 and str(bad) in err and needle in err


@pytest.mark.parametrize("flag,name,needle", [("--out", "x.jsonl", "cannot write there"),
                                               ("--ignored-log", "x.jsonl", "cannot write there"),
                                               ("--annotate", "x.mp4", "cannot make its folder")])
def test_cli_replay_unwritable_output_names_the_flag(video, tmp_path, monkeypatch, capsys, flag, name, needle):
    monkeypatch.setattr("ewaste_stream.commands.replay._load_model", lambda cfg: ColourClassifier())
    (tmp_path / "file").write_text("")
    bad = tmp_path / "file" / name  # its folder is a file
    assert main(["replay", str(video), flag, str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"error: {flag} {bad}: {needle}" in err and "Traceback" not in err


class _Recording(ColourClassifier):
    """ColourClassifier that keeps every crop it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.crops: list[np.ndarray] = []

    def predict(self, crops):  # noqa: ANN001, ANN201
        self.crops.extend(c.copy() for c in crops)
        return super().predict(crops)


@pytest.mark.parametrize("mask", [0.0056, None])
def test_a_neighbour_in_an_items_crop_is_painted_the_belts_colour(tmp_path, mask):
    """Two items side by side, 14 px apart: the square crop of the first reaches into the second.
    With ``batching.mask_neighbours`` the classifier sees none of the second's colour in it."""
    items = [SynthItem(1, cx=-60.0, cy=70.0, w=70, h=44, angle=0.0, cls=0),
             SynthItem(2, cx=-60.0, cy=70.0 + 44 + 14, w=70, h=44, angle=0.0, cls=1)]
    video = write_video(tmp_path / "pair.mp4", frames=60, items=items)
    clf = _Recording()
    cfg = Config.model_validate({"detector": {"min_area": 300}, "batching": {"mask_neighbours": mask}})
    s = replay_files([video], cfg, clf)
    assert s.decisions == 2 and sorted(s.labels) == ["class0", "class1"]
    first = [c for c in clf.crops if np.abs(c[c.shape[0] // 2, c.shape[1] // 2].astype(int) - (230, 200, 40)).max() < 40]
    assert first  # crops of item 1 (its colour at the centre, RGB)
    other = np.array((40, 120, 230))  # item 2's colour, RGB
    seen = [int((np.abs(c.astype(int) - other).max(axis=2) < 40).sum()) for c in first]
    if mask is None:
        assert min(seen) > 50  # the neighbour reaches into every crop of item 1
    else:
        assert max(seen) == 0


def test_truncated_video_keeps_decisions_and_fails(video, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("ewaste_stream.commands.replay._load_model", lambda cfg: ColourClassifier())
    data = video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("detector:\n  min_area: 300\n")
    out = tmp_path / "d.jsonl"
    rc = main(["replay", str(cut), "--config", str(cfg), "--out", str(out)])
    captured = capsys.readouterr()
    if rc == 0:  # the container still opened and reported what it holds: nothing was lost
        return
    assert rc == 1 and "cut.mp4" in captured.out + captured.err
    assert out.exists()


def test_missing_file_raises_before_anything_runs(tmp_path):
    with pytest.raises(ReplayError, match="missing.mp4"):
        replay_files([tmp_path / "missing.mp4"], _cfg(), ColourClassifier())


def test_realtime_paces_and_counts_drops(video):
    s = replay_files([video], _cfg(), ColourClassifier(), options=ReplayOptions(realtime=True))
    assert s.wall_s >= 90 / FPS * 0.9  # paced to the video's frame rate
    assert sum(s.frames.values()) + sum(s.dropped.values()) == 90


def test_frames_dropped_in_bursts_still_decide_each_item_once(video):
    """``drop=(10, 6)``: 6 of every 10 frames skipped, as a live queue drops them while the
    pipeline is behind. The belt then moves 7 x 12 = 84 px between two frames, over this
    config's 40 px a frame: every item is still decided once, as from every frame."""
    cfg = Config.model_validate({"detector": {"min_area": 300}, "tracker": {"max_speed_px": 40}})
    full, part = [], []
    replay_files([video], cfg, ColourClassifier(), ReplayHooks(on_decision=full.append))
    s = replay_files([video], cfg, ColourClassifier(), ReplayHooks(on_decision=part.append),
                     ReplayOptions(drop=(10, 6)))
    assert s.frames == {"cam0": 36} and s.dropped == {"cam0": 54}
    assert s.video_s == pytest.approx(90 / FPS)
    assert len(full) >= 7 and len(part) == len(full)
    assert sorted(d.label for d in part) == sorted(d.label for d in full)


@pytest.mark.parametrize("kw", [{"drop": (10, 10)}, {"drop": (2, 1), "realtime": True}])
def test_bad_drop_pattern_is_refused_before_anything_runs(kw):
    with pytest.raises(ValueError, match="drop="):
        ReplayOptions(**kw)
    with pytest.raises(ValueError, match="loops="):
        ReplayOptions(loops=0)


@pytest.mark.slow
def test_sample_video_end_to_end_with_default_model():
    """The committed sample (640x360, 30 fps) through the shipped model, scored against its GT."""
    model_dir = REPO / "models" / "default"
    if not (SAMPLE.with_suffix(".cam0.mp4")).exists() and not Path(f"{SAMPLE}.cam0.mp4").exists():
        pytest.skip("sample video not committed")
    if not (model_dir / "model.json").exists():
        pytest.skip("default model not committed")
    from ewaste_stream.model import load_classifier
    from ewaste_stream.scoring import read_gt, score

    clf = load_classifier(model_dir, backend="onnx", device="cpu", threads=2)
    got = []
    s = replay_files([f"{SAMPLE}.cam0.mp4"], load_config(None), clf, ReplayHooks(on_decision=got.append))
    meta = json.loads(Path(f"{SAMPLE}.meta.json").read_text())
    res = score(read_gt(f"{SAMPLE}.gt.jsonl"), got, meta["fps"], t_last=meta["t_last_frame"])
    assert res["seq_gaps"] == 0
    assert res["matched"] >= 0.9 * res["items"]
    assert res["duplicates"] + res["phantoms"] <= 0.15 * res["items"]
    assert s.latency_ms_p99 is not None and s.latency_ms_p99 <= 1000.0 / meta["fps"] + 1e-6


def _two_cameras(tmp_path: Path, frames0: int, frames1: int) -> list[Path]:
    """Two frame-synchronous views of one belt (camera 1: brighter, noisier), cut to lengths."""
    belt = SynthBelt(W, H, seed=2, speed=lambda k: 12.0)
    rng = np.random.default_rng(0)
    paths = [tmp_path / "two.cam0.mp4", tmp_path / "two.cam1.mp4"]
    writers = [cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H)) for p in paths]
    for k in range(max(frames0, frames1)):
        img = belt.frame(k, _items(27))[0]
        if k < frames0:
            writers[0].write(img)
        if k < frames1:
            noisy = np.clip(img.astype(np.int16) * 1.06 + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
            writers[1].write(noisy)
    for w in writers:
        w.release()
    return paths


@pytest.mark.parametrize("cut", ["cam1", "cam0"])
def test_one_camera_ends_early_the_other_decides_the_rest(tmp_path, cut):
    full, short = 135, 60
    paths = _two_cameras(tmp_path, full if cut == "cam1" else short, short if cut == "cam1" else full)
    single = []
    replay_files([paths[0] if cut == "cam1" else paths[1]], _cfg(), ColourClassifier(),
                 ReplayHooks(on_decision=single.append))
    got, statuses = [], []
    every_view = Config.model_validate({"detector": {"min_area": 300}, "batching": {"stop_confidence": None}})
    s = replay_files(paths, every_view, ColourClassifier(),
                     ReplayHooks(on_decision=got.append, on_status=statuses.append))
    assert len(single) >= 7
    assert len(got) == len(single)  # one decision per item, none lost, no duplicates from two views
    assert [d.seq for d in got] == list(range(1, len(got) + 1))
    pairs = zip(sorted(d.t_cross for d in got), sorted(d.t_cross for d in single))
    assert all(abs(a - b) <= 1.5 / FPS for a, b in pairs)  # the same items
    t_cut = (short - 1) / FPS
    early = [d for d in got if d.t_decided < t_cut - 2 / FPS]
    late = [d for d in got if d.t_first > t_cut]  # came into view after the cut
    assert len(single) >= 20 and early and late
    assert all(set(d.views_by_camera) == {"cam0", "cam1"} for d in early)
    assert all(set(d.views_by_camera) == {"cam0" if cut == "cam1" else "cam1"} for d in late)
    assert any(st.kind.value == "source_lost" and st.source == cut for st in statuses)
    assert s.frames[cut] == short and not s.errors


def test_replay_with_detection_on_its_own_thread_decides_as_on_one_thread(video):
    """The detector's thread runs ahead of the tracker; the decisions are those of the
    pipeline stepping every frame on one thread."""
    from ewaste_stream.pipeline import Pipeline

    threaded: list = []
    replay_files([video], _cfg(), ColourClassifier(), ReplayHooks(on_decision=threaded.append),
                 ReplayOptions(boot_id="b"))
    inline: list = []
    pipe = Pipeline(camera_config(_cfg(), 1), ColourClassifier(), "b", inline.append, inline_inference=True)
    cap, k = cv2.VideoCapture(str(video)), 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        pipe.process(Frame("cam0", k, k / FPS, img))
        last, k = k / FPS, k + 1
    pipe.flush(last)
    assert len(threaded) >= 7
    key = [(d.item_id, d.label, d.t_cross, d.t_decided, d.views, d.confidence) for d in threaded]
    assert key == [(d.item_id, d.label, d.t_cross, d.t_decided, d.views, d.confidence) for d in inline]


def test_analysis_thread_keeps_order_raises_where_it_failed_and_stops_early():
    import threading

    def source(n):
        for k in range(n):
            yield Frame("cam0", k, k / FPS, np.zeros((4, 4, 3), np.uint8)), 0.0, None

    def analyse(frame, small):
        if frame.seq == 7:
            raise ValueError("frame size changed")
        return frame.seq * 10

    got = []
    with pytest.raises(ValueError, match="frame size changed"):
        for frame, _, _, an in analysed(source(20), analyse, threading.Event(), ahead=2):
            got.append((frame.seq, an))
    assert got == [(k, 10 * k) for k in range(7)]  # every frame before the failure, in order
    stop, seen = threading.Event(), []
    for frame, _, _, _ in analysed(source(1000), lambda f, s: (seen.append(f.seq), 0)[1], stop, ahead=2):
        if frame.seq == 3:
            break
    assert stop.is_set() and len(seen) <= 3 + 1 + 2 + 1  # the thread ran at most its queue ahead, then stopped


def test_stopping_a_replay_early_ends_its_threads_and_keeps_what_was_decided(video):
    import threading

    stop, got = threading.Event(), []

    def on_frame(frame, decisions):
        if frame.seq == 60:
            stop.set()  # e.g. SIGTERM: the threads must end, not wait on each other

    s = replay_files([video], _cfg(), ColourClassifier(), ReplayHooks(on_decision=got.append, on_frame=on_frame),
                     stop=stop)
    assert 60 <= s.frames["cam0"] < 90 and len(got) == s.decisions >= 1
    assert [d.seq for d in got] == list(range(1, len(got) + 1))
    left = [t.name for t in threading.enumerate() if t.name in ("analysis", "read-cam0")]
    assert left == []
