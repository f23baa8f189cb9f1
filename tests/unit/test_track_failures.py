"""tools/track_failures.py: failure classes from hand-made ground truth and decisions."""

from __future__ import annotations

import json

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
