"""Belt simulator end to end on tiny videos: determinism, geometry, no overlaps, files, scorer CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ewaste_stream.messages import Decision
from ewaste_stream.protocol import encode_decision
from ewaste_stream.scoring import SCORE_KEYS
from ewaste_stream.sim.effects import Realism
from ewaste_stream.sim.video import VideoSpec, open_scene
from ewaste_stream.testing import load_tool

COLOURS = {"Battery": (230, 40, 40), "Mouse": (40, 230, 40), "PCB": (60, 60, 240)}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Three classes of bright synthetic 'products' on white (and one scene photo each)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for cls, colour in COLOURS.items():
        (root / cls).mkdir()
        for i in range(3):
            img = np.full((150, 150, 3), 252, np.uint8)
            box = cv2.boxPoints(((75, 75), (int(rng.integers(60, 120)), int(rng.integers(40, 90))), float(i * 20)))
            cv2.fillPoly(img, [box.astype(np.int32)], colour[::-1])
            cv2.imwrite(str(root / cls / f"{cls.lower()}_{i}.jpg"), img)
        scene = cv2.resize(rng.integers(0, 255, (6, 6, 3)).astype(np.uint8), (150, 150))
        cv2.imwrite(str(root / cls / f"{cls.lower()}_scene.jpg"), scene)
    return root


TINY = dict(seconds=2.0, fps=30.0, size=(320, 180), rate=6.0)


def test_same_seed_same_video(images):
    def frames_and_gt(seed: int):
        r, rows = open_scene(images, VideoSpec(seed=seed, cameras=2, **TINY), Realism())
        frames = [r.render(f) for f in range(0, 40, 8)]
        r.render(59)
        return frames, list(rows)

    fa, ga = frames_and_gt(3)
    fb, gb = frames_and_gt(3)
    _, gc = frames_and_gt(4)
    assert ga == gb and len(ga) >= 5
    assert all(np.array_equal(x, y) for fx, fy in zip(fa, fb) for x, y in zip(fx, fy))
    assert ga != gc


def visible_pixels(r, f: int, item: int | None, camera: int = 0) -> np.ndarray:
    canvas = r.belt_canvas(f, items=item is not None, only={item} if item else None)
    return r.camera_frame(canvas, r.cameras[camera], f, effects=False).astype(np.int32)


def test_t_cross_and_y_are_where_the_pixels_are(images):
    """At the frame nearest t_cross the item's pixels' centroid is on the line (+- the sub-frame
    remainder) and at y, in camera 0; camera 1 sees it where the meta's homography says."""
    realism = Realism(shadows=0, dark_items=0)
    r, rows = open_scene(images, VideoSpec(seed=5, cameras=2, **TINY), realism)
    g, checked = r.geo, 0
    for f in range(60):
        r.visible(f)
        for row in [x for x in rows if round(x["t_cross"] * g.fps) == f]:
            expect_x = g.line * g.width + g.speed * (f - row["t_cross"] * g.fps)
            expect_y = row["y"] * g.height
            for cam in (0, 1):
                diff = np.abs(visible_pixels(r, f, row["item"], cam) - visible_pixels(r, f, None, cam)).sum(axis=2)
                w = diff.astype(np.float64)
                ys, xs = np.mgrid[0:diff.shape[0], 0:diff.shape[1]]
                cx, cy = (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()
                p = r.cameras[cam].belt_to_image @ np.array([expect_x, expect_y, 1.0])
                assert abs(cx - p[0] / p[2]) < 1.5 and abs(cy - p[1] / p[2]) < 1.5, (row, cam)
            assert abs(expect_x - g.line * g.width) <= g.speed / 2
            checked += 1
        for row in [x for x in rows if x["frame_at_line"] == f]:  # the GT box is where the item is
            diff = np.abs(visible_pixels(r, f, row["item"]) - visible_pixels(r, f, None)).sum(axis=2)
            ys, xs = np.nonzero(diff > 0.5 * np.percentile(diff[diff > 0], 95))  # alpha > ~0.5
            x0, y0, x1, y1 = row["bbox_at_line"]
            assert abs(xs.min() - x0) <= 1 and abs(xs.max() + 1 - x1) <= 1, row
            assert abs(ys.min() - y0) <= 1 and abs(ys.max() + 1 - y1) <= 1, row
    assert checked >= 4


def test_items_never_overlap(images):
    r, rows = open_scene(images, VideoSpec(seed=1, **dict(TINY, rate=30.0)), Realism(min_size=0.25, max_size=0.4))
    for f in range(0, 60, 3):
        cover = np.zeros((r.ch + 2000, r.cw + 2000), np.int32)  # sprites may reach past the frame
        for p, x, y in r.visible(f):
            m = (p.sprite.alpha > 0.5).astype(np.int32)
            cover[y + 1000:y + 1000 + m.shape[0], x + 1000:x + 1000 + m.shape[1]] += m
        assert cover.max() <= 1, f"overlap in frame {f}"
    t_last = 59 / 30
    crossing = [x for x in rows if x["t_cross"] <= t_last]
    assert len(crossing) >= 12  # the belt is full: the test means something


def test_make_belt_video_writes_files_and_cli_scores_them(images, tmp_path, capsys):
    out = tmp_path / "belt"
    rc = load_tool("make_belt_video").main(["--images", str(images), "--out", str(out), "--seconds", "2", "--fps", "30",
                                       "--size", "320x180", "--rate", "6", "--cameras", "2", "--seed", "2"])
    assert rc == 0
    meta = json.loads((tmp_path / "belt.meta.json").read_text())
    assert meta["fps"] == 30 and meta["size"] == [320, 180] and meta["n_frames"] == 60
    assert meta["line_position"] == 0.75 and meta["belt_speed_px_per_frame"] >= 1 and len(meta["cameras"]) == 2
    assert meta["cameras"][0]["belt_to_image"] == np.eye(3).tolist()
    for cam in (0, 1):
        cap = cv2.VideoCapture(str(tmp_path / f"belt.cam{cam}.mp4"))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = cap.read()
        cap.release()
        assert ok and frame.shape == (180, 320, 3) and n == 60
    rows = [json.loads(x) for x in (tmp_path / "belt.gt.jsonl").read_text().splitlines()]
    assert rows and set(rows[0]) >= {"item", "label", "file", "t_enter", "t_cross", "y", "angle", "scale"}
    assert all(0 <= r["y"] <= 1 and r["t_cross"] >= 0.25 and r["label"] in COLOURS for r in rows)
    # a perfect run, on the wire, with one malformed line and one wrong label
    scored = [r for r in rows if r["t_cross"] <= meta["t_last_frame"]]
    lines = [encode_decision(wire_decision(i + 1, r["label"], r["t_cross"], r["y"])).decode()
             for i, r in enumerate(scored)]
    lines.insert(1, '{"schema": 1, "seq": 99}')
    log = tmp_path / "d.jsonl"
    log.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert load_tool("score_decisions").main([str(tmp_path / "belt.gt.jsonl"), str(log), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert tuple(result) == SCORE_KEYS
    assert result["items"] == result["matched"] == result["decisions"] == len(scored)
    assert result["accuracy_all"] == 1.0 and result["seq_gaps"] == 0
    assert ":2: skipped malformed decision" in captured.err
    assert load_tool("score_decisions").main([str(tmp_path / "belt.gt.jsonl"), str(log)]) == 0
    assert "per-class recall" in capsys.readouterr().out


def wire_decision(seq: int, label: str, t: float, y: float) -> Decision:
    return Decision(line="l1", boot_id="b1", seq=seq, item_id=seq, label=label, top_label=label, class_index=0,
                    confidence=0.9, margin=0.5, reject_reason=None, probs={label: 0.9}, views=2,
                    views_by_camera={"cam0": 2}, t_first=max(0.0, t - 0.5), t_cross=t, t_decided=t, y=y,
                    bbox=(0.0, 0.0, 10.0, 10.0), deadline=None, lane=None, actuator=None,
                    model={"name": "m", "sha256": "0"}, config_sha="c")


@pytest.mark.parametrize("argv,code", [
    (["--size", "320by180"], 2),
    (["--rate", "-1"], 2),
    (["--images", "/nonexistent/folder"], 1),
])
def test_make_belt_video_bad_usage(images, tmp_path, argv, code):
    base = ["--images", str(images), "--out", str(tmp_path / "x"), "--seconds", "1", "--size", "128x96"]
    if code == 2 and argv[0] == "--size":
        with pytest.raises(SystemExit) as exc:
            load_tool("make_belt_video").main(base + argv)
        assert exc.value.code == 2
    else:
        assert load_tool("make_belt_video").main(base + argv) == code
