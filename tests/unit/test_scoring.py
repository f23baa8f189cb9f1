"""Decision scorer: matching, counts, accuracies, seq gaps (table-driven)."""

from __future__ import annotations

import json

import pytest

from ewaste_stream.scoring import SCORE_KEYS, meta_beside, score, score_report

FPS = 60.0
GT = [
    {"item": 1, "label": "Mouse", "t_cross": 1.00, "y": 0.20},
    {"item": 2, "label": "PCB", "t_cross": 1.50, "y": 0.60},
    {"item": 3, "label": "Mouse", "t_cross": 1.51, "y": 0.90},  # same time as item 2, other lane
    {"item": 4, "label": "Battery", "t_cross": 2.50, "y": 0.40},
]


def dec(seq: int, label: str, t: float, y: float, boot: str = "b1") -> dict:
    return {"seq": seq, "boot_id": boot, "label": label, "t_cross": t, "y": y}


PERFECT = [dec(1, "Mouse", 1.01, 0.21), dec(2, "PCB", 1.49, 0.61), dec(3, "Mouse", 1.52, 0.88),
           dec(4, "Battery", 2.50, 0.40)]

# name, decisions, expected subset of the result
CASES = [
    ("perfect", PERFECT,
     dict(items=4, decisions=4, matched=4, missed=0, duplicates=0, phantoms=0, accuracy_matched=1.0,
          accuracy_all=1.0, reject_rate=0.0, accuracy_accepted=1.0, top1_matched=1.0, seq_gaps=0)),
    ("a miss", [PERFECT[0], PERFECT[1], dec(3, "Battery", 2.50, 0.40)],
     dict(items=4, decisions=3, matched=3, missed=1, accuracy_matched=1.0, accuracy_all=0.75)),
    ("a duplicate", PERFECT + [dec(5, "Mouse", 1.03, 0.19)],
     dict(decisions=5, matched=4, duplicates=1, phantoms=0, accuracy_all=1.0)),
    ("a phantom", PERFECT + [dec(5, "PCB", 2.0, 0.5)],
     dict(decisions=5, matched=4, duplicates=0, phantoms=1, accuracy_all=1.0)),
    ("outside time tolerance", [dec(1, "Mouse", 1.0 + 4 / FPS, 0.2)] + PERFECT[1:],
     dict(matched=3, missed=1, phantoms=1)),
    ("outside y tolerance", [dec(1, "Mouse", 1.0, 0.32)] + PERFECT[1:],
     dict(matched=3, missed=1, phantoms=1)),
    ("a wrong label", [dec(1, "Keyboard", 1.0, 0.2)] + PERFECT[1:],
     dict(matched=4, accuracy_matched=0.75, accuracy_all=0.75, accuracy_accepted=0.75, reject_rate=0.0)),
    ("a reject", [dec(1, "reject", 1.0, 0.2)] + PERFECT[1:],
     dict(matched=4, accuracy_matched=0.75, accuracy_all=0.75, reject_rate=0.25, accuracy_accepted=1.0,
          top1_matched=0.75)),
    ("a reject whose best class was right", [dict(dec(1, "reject", 1.0, 0.2), top_label="Mouse")] + PERFECT[1:],
     dict(matched=4, accuracy_matched=0.75, reject_rate=0.25, accuracy_accepted=1.0, top1_matched=1.0)),
    ("a reject whose best class was wrong", [dict(dec(1, "reject", 1.0, 0.2), top_label="PCB")] + PERFECT[1:],
     dict(matched=4, accuracy_matched=0.75, reject_rate=0.25, accuracy_accepted=1.0, top1_matched=0.75)),
    ("a seq gap", [PERFECT[0], PERFECT[1], dict(PERFECT[2], seq=5), dict(PERFECT[3], seq=6)],
     dict(matched=4, seq_gaps=2)),
    ("gaps counted per boot", [dec(1, "Mouse", 1.0, 0.2), dec(2, "PCB", 1.5, 0.6), dec(1, "Mouse", 1.51, 0.9, "b2"),
                               dec(3, "Battery", 2.5, 0.4, "b2")],
     dict(matched=4, seq_gaps=1)),
    ("first seq missing", [dict(d, seq=d["seq"] + 1) for d in PERFECT], dict(seq_gaps=1)),
    ("nothing decided", [], dict(items=4, decisions=0, matched=0, missed=4, accuracy_matched=None,
                                 accuracy_all=0.0, reject_rate=None, accuracy_accepted=None, top1_matched=None)),
]


@pytest.mark.parametrize("name,decisions,expected", CASES, ids=[c[0] for c in CASES])
def test_score_cases(name, decisions, expected):
    result = score(GT, decisions, FPS)
    assert tuple(result) == SCORE_KEYS
    assert {k: result[k] for k in expected} == expected
    assert result["matched"] + result["duplicates"] + result["phantoms"] == result["decisions"]
    assert result["matched"] + result["missed"] == result["items"]


def test_per_class_recall_and_confusion():
    decisions = [dec(1, "Keyboard", 1.0, 0.2), PERFECT[1], dec(3, "reject", 1.51, 0.9)]
    r = score(GT, decisions, FPS)
    assert r["per_class_recall"] == {"Battery": 0.0, "Mouse": 0.0, "PCB": 1.0}
    assert r["confusion"] == {"Battery": {"missed": 1}, "Mouse": {"Keyboard": 1, "reject": 1}, "PCB": {"PCB": 1}}


def test_matching_is_one_to_one_and_prefers_the_closest():
    gt = [{"label": "A", "t_cross": 1.0, "y": 0.5}, {"label": "B", "t_cross": 1.03, "y": 0.5}]
    # two decisions both within tolerance of both items; the closest pairing labels both right
    r = score(gt, [dec(1, "B", 1.03, 0.5), dec(2, "A", 1.005, 0.5)], FPS)
    assert r["matched"] == 2 and r["accuracy_all"] == 1.0


def test_end_of_video_is_not_scored():
    gt = GT + [{"label": "PCB", "t_cross": 3.4, "y": 0.5}]  # crosses after the last frame
    flush = dec(5, "reject", 2.99, 0.5)  # decided at end of stream, t_last - t_cross < 3 frames
    result, details = score_report(gt, PERFECT + [flush], FPS, t_last=3.0)
    assert result["items"] == 4 and result["decisions"] == 4 and result["phantoms"] == 0
    assert details["ignored_items"] == 1 and details["ignored_decisions"] == 1


@pytest.mark.parametrize("fps,row,error", [
    (0.0, None, "fps must be > 0"),
    (FPS, {"label": "A", "y": 0.5}, "decision row 1"),
    (FPS, {"label": "A", "t_cross": "soon", "y": 0.5}, "decision row 1"),
])
def test_bad_input(fps, row, error):
    with pytest.raises(ValueError, match=error):
        score(GT, [row] if row else [], fps)


def test_meta_beside(tmp_path):
    (tmp_path / "run.meta.json").write_text(json.dumps({"fps": 30}))
    assert meta_beside(tmp_path / "run.gt.jsonl") == {"fps": 30}
    assert meta_beside(tmp_path / "other.gt.jsonl") is None
