"""tools/track_failures.py: failure classes from hand-made ground truth and decisions."""

from __future__ import annotations

import json
import sys

import pytest

from ewaste_stream.testing import load_tool


def _item(n, t, y, bbox):
    return {"item": n, "label": "Mouse", "file": f"Mouse/m{n}.jpg", "cutout": True, "t_cross": t, "y": y,
            "frame_at_line": round(t * 60), "bbox_at_line": bbox}


def _dec(track, t, y, bbox):
    return {"item_id": track, "label": "Mouse", "t_cross": t, "y": y, "bbox": bbox, "seq": track, "boot_id": "b"}


def test_failure_classes(tmp_path):
    prefix = tmp_path / "v"
    (tmp_path / "v.meta.json").write_text(json.dumps({"fps": 60.0, "t_last_frame": 10.0, "belt_speed_px_per_frame": 36}))
    gt = [_item(1, 1.0, 0.2, [900, 100, 1000, 200]), _item(2, 2.0, 0.5, [900, 300, 1000, 400]),
          _item(3, 2.0, 0.8, [900, 500, 1000, 620]), _item(4, 3.0, 0.5, [900, 300, 1000, 400])]
    decs = [_dec(1, 1.0, 0.2, [900, 100, 1000, 200]), _dec(2, 1.01, 0.25, [930, 120, 990, 190]),  # item 1 + a piece of it
            _dec(3, 2.0, 0.8, [880, 280, 1020, 620]),  # items 3 and 2 as one track
            _dec(4, 4.0, 0.5, [900, 300, 940, 310])]  # nothing there
    (tmp_path / "v.gt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gt))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in decs))
    rows = load_tool("track_failures").failures(prefix, tmp_path / "d.jsonl")
    kinds = sorted(k for k, _ in rows)
    assert kinds == ["duplicate", "missed merged", "missed unseen", "phantom"]
    text = dict(rows)
    assert "item 2 " in text["missed merged"] and "track=3" in text["missed merged"]
    assert "item 4 " in text["missed unseen"] and "track 2 " in text["duplicate"]


def test_failures_by_photo(tmp_path):
    prefix = tmp_path / "v"
    (tmp_path / "v.meta.json").write_text(json.dumps({"fps": 60.0, "t_last_frame": 10.0, "belt_speed_px_per_frame": 36}))
    gt = [_item(1, 1.0, 0.2, [900, 100, 1000, 200]), _item(2, 2.0, 0.2, [900, 100, 1000, 200]),
          _item(3, 3.0, 0.5, [900, 300, 1000, 400]), _item(4, 4.0, 0.5, [900, 300, 1000, 400])]
    gt[1]["file"] = gt[0]["file"]  # items 1 and 2: the same photo, drawn twice
    decs = [_dec(1, 1.0, 0.2, [900, 100, 1000, 200]), _dec(2, 1.0, 0.22, [930, 120, 990, 190]),
            _dec(3, 2.0, 0.2, [900, 100, 1000, 200]), _dec(4, 2.01, 0.23, [930, 120, 990, 190]),
            _dec(5, 4.0, 0.5, [900, 300, 1000, 400])]  # item 3 missed
    (tmp_path / "v.gt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gt))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in decs))
    top = load_tool("track_failures").by_photo(prefix, tmp_path / "d.jsonl", most=5)
    assert top["duplicate"] == [("Mouse/m1.jpg", 2)]
    assert top["missed"] == [("Mouse/m3.jpg", 1)]


def test_unseen_items_say_which_tracker_threshold_left_them_out(tmp_path, monkeypatch, capsys):
    """``--ignored``: the regions of ``replay --ignored-log`` on an unseen item's path (moved with the
    belt, 36 px a frame) are counted by reason; an item with none was never a region."""
    prefix = tmp_path / "v"
    (tmp_path / "v.meta.json").write_text(json.dumps({"fps": 60.0, "t_last_frame": 10.0, "belt_speed_px_per_frame": 36}))
    gt = [_item(1, 1.0, 0.2, [900, 100, 1000, 200]), _item(2, 2.0, 0.5, [900, 300, 1000, 400]),
          _item(3, 3.0, 0.8, [900, 500, 1000, 620])]
    for it in gt:
        it["t_enter"] = it["t_cross"] - 0.5
    (tmp_path / "v.gt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gt))
    (tmp_path / "d.jsonl").write_text(json.dumps(_dec(3, 3.0, 0.8, [900, 500, 1000, 620])) + "\n")
    log = [
        # item 1 (at the line in frame 60): 10 frames before, it was 360 px upstream
        {"camera": "cam0", "seq": 50, "t": 50 / 60, "regions": [{"bbox": [560, 120, 620, 180], "reason": "faint_crowded"},
                                                                 {"bbox": [900, 120, 960, 180], "reason": "faint"}]},
        {"camera": "cam0", "seq": 59, "t": 59 / 60, "regions": [{"bbox": [880, 110, 950, 190], "reason": "faint_crowded"}]},
        {"camera": "cam0", "seq": 60, "t": 1.0, "regions": [{"bbox": [910, 120, 990, 180], "reason": "small_faint"}]},
        {"camera": "cam1", "seq": 60, "t": 1.0, "regions": [{"bbox": [910, 120, 990, 180], "reason": "thin"}]},
    ]
    (tmp_path / "ig.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    tool = load_tool("track_failures")
    rows = dict((text.split(" frame ")[0], text) for kind, text in tool.failures(prefix, tmp_path / "d.jsonl",
                                                                               ignored=tmp_path / "ig.jsonl"))
    assert rows["item 1"].endswith("left out: faint_crowded 2, small_faint 1")  # not the one in place, nor cam1's
    assert rows["item 2"].endswith("never a region")
    monkeypatch.setattr(sys, "argv", ["track_failures", str(prefix), str(tmp_path / "d.jsonl"),
                                      "--ignored", str(tmp_path / "ig.jsonl")])
    assert tool.main() == 0
    assert "left out most often: faint_crowded 1, never a region 1" in capsys.readouterr().out
    (tmp_path / "bad.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        tool.failures(prefix, tmp_path / "d.jsonl", ignored=tmp_path / "bad.jsonl")


def test_hand_labelled_ground_truth_needs_no_photo_names(tmp_path):
    """Ground truth written by hand for a real recording has no ``file``, ``cutout`` or ``t_enter``."""
    prefix = tmp_path / "v"
    (tmp_path / "v.meta.json").write_text(json.dumps({"fps": 30.0, "t_last_frame": 10.0, "belt_speed_px_per_frame": 20}))
    gt = [{"item": 1, "label": "Mouse", "t_cross": 1.0, "y": 0.2, "frame_at_line": 30, "bbox_at_line": [900, 100, 1000, 200]},
          {"item": 2, "label": "PCB", "t_cross": 2.0, "y": 0.5, "frame_at_line": 60, "bbox_at_line": [900, 300, 1000, 400]}]
    (tmp_path / "v.gt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gt))
    decs = [_dec(1, 1.0, 0.2, [900, 100, 1000, 200]), _dec(2, 1.0, 0.25, [920, 110, 980, 190])]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in decs))
    (tmp_path / "ig.jsonl").write_text(json.dumps({"camera": "cam0", "seq": 55, "t": 55 / 30, "regions": [
        {"bbox": [800, 320, 880, 380], "reason": "faint"}]}) + "\n")  # item 2, 5 frames (100 px) before the line
    rows = load_tool("track_failures").failures(prefix, tmp_path / "d.jsonl", ignored=tmp_path / "ig.jsonl")
    assert sorted(k for k, _ in rows) == ["duplicate", "missed unseen"]
    assert dict(rows)["missed unseen"].endswith("- bbox=[900, 300, 1000, 400] track=- left out: faint 1")
