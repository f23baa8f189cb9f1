"""tools/item_lengths.py: lengths of regions at birth, for setting tracker.new_max_length."""

from __future__ import annotations

from pathlib import Path

from ewaste_stream.testing import load_tool

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
VIDEO = SAMPLES / "belt_val_demo.cam0.mp4"


def test_sample_video_lengths_by_what_each_track_was():
    tool = load_tool("item_lengths")
    rows, facts = tool.birth_lengths(VIDEO)
    labels = tool.label_by_gt(rows, SAMPLES / "belt_val_demo.gt.jsonl", facts["fps"])
    out = tool.report(rows, facts, labels)
    assert out["tracks"]["n"] == len(rows) > 50
    assert sum(out[k]["n"] for k in ("one item", "merged", "other")) == len(rows)
    assert out["one item"]["n"] >= 0.9 * len(rows)
    assert all(0.05 < r["length"] < 1.0 for r in rows)
    # the shipped value lies above every single item of the sample
    assert facts["configured"] == 0.37 and out["one item"]["max"] < facts["configured"]


def test_lengths_are_measured_with_the_cut_off(tmp_path):
    """A config whose new_max_length would cut the sample's longer items: the tool reports it, and
    still measures the regions whole (lengths beyond it)."""
    cfg = tmp_path / "line.yaml"
    cfg.write_text("tracker:\n  new_max_length: 0.29\n")
    rows, facts = load_tool("item_lengths").birth_lengths(VIDEO, cfg)
    assert facts["configured"] == 0.29
    assert max(r["length"] for r in rows) > 0.3
