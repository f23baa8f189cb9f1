"""Decision-log analysis: parsing (bad lines kept aside), seq gaps per boot, counts, latency."""

from __future__ import annotations

import dataclasses

import pytest

from ewaste_stream.analysis.decisions_report import DecisionLogError, load_decisions, seq_gaps, summarise_decisions
from ewaste_stream.protocol import encode_decision
from ewaste_stream.testing import make_decision


def _write(path, decisions, extra_lines=()):
    lines = [encode_decision(d).decode() for d in decisions] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("seqs,missing,gaps,dups,out_of_order", [
    ([1, 2, 3, 4], 0, [], 0, 0),
    ([1, 2, 5, 6, 8], 3, [(3, 4), (7, 7)], 0, 0),
    ([1, 2, 2, 3], 0, [], 1, 0),
    ([1, 3, 2, 4], 0, [], 0, 1),
])
def test_seq_gaps_one_boot(seqs, missing, gaps, dups, out_of_order):
    g = seq_gaps([make_decision(s) for s in seqs])["boot-a"]
    assert (g["missing"], g["gaps"], g["duplicates"], g["out_of_order"]) == (missing, gaps, dups, out_of_order)
    assert g["starts_at_1"] and g["last_seq"] == max(seqs)


def test_seq_restarts_with_a_new_boot_are_not_gaps():
    ds = [make_decision(s, boot_id="a") for s in (1, 2, 3)] + [make_decision(s, boot_id="b") for s in (1, 2)]
    g = seq_gaps(ds)
    assert list(g) == ["a", "b"] and g["a"]["missing"] == g["b"]["missing"] == 0


def test_load_keeps_bad_lines_aside(tmp_path):
    p = _write(tmp_path / "d.jsonl", [make_decision(1), make_decision(2)],
               extra_lines=["", "{broken", '{"schema": 2}', encode_decision(make_decision(3)).decode()])
    log = load_decisions(p)
    assert [d.seq for d in log.decisions] == [1, 2, 3]
    assert [n for n, _ in log.bad_lines] == [4, 5]  # the blank line 3 is skipped silently
    assert "schema" in log.bad_lines[1][1]


@pytest.mark.parametrize("content,match", [(None, "not found"), ("", "no valid decisions"),
                                           ("garbage\n", "1 bad lines")])
def test_unreadable_logs_are_clear_errors(tmp_path, content, match):
    p = tmp_path / "d.jsonl"
    if content is not None:
        p.write_text(content)
    with pytest.raises(DecisionLogError, match=match):
        load_decisions(p)


def test_summary_counts_rejects_latency_and_deadlines(tmp_path):
    ds = [make_decision(1), make_decision(2, label="reject"), make_decision(3, label="PCB"),
          dataclasses.replace(make_decision(4), t_decided=4.5 + 0.8, deadline=4.5 + 0.5)]  # late
    s = summarise_decisions(load_decisions(_write(tmp_path / "d.jsonl", ds)))
    assert s["decisions"] == 4 and s["rejects"] == 1 and s["reject_rate"] == 0.25
    assert s["per_label"] == {"Mouse": 2, "reject": 1, "PCB": 1}
    assert s["reject_reasons"] == {"low_confidence": 1}
    assert s["after_deadline"] == 1
    assert s["latency_s"]["max"] == pytest.approx(0.8)
    assert s["latency_s"]["median"] == pytest.approx(0.02)


def _decided(seq, top, conf, margin):
    d = make_decision(seq)  # t_cross = seq + 0.5, y = 0.5
    return dataclasses.replace(d, label=top, top_label=top, confidence=conf, margin=margin)


def test_against_ground_truth_measures_fused_thresholds(tmp_path):
    from ewaste_stream.analysis.decisions_report import GroundTruth, against_ground_truth

    # truth: Mouse for items 1..13 (item 13 is never decided); decision s has confidence 1.01 - 0.02 s,
    # and the top label is wrong for s = 5, 11, 12
    wrong = {5, 11, 12}
    ds = [_decided(s, "PCB" if s in wrong else "Mouse", round(1.01 - 0.02 * s, 2), 0.3) for s in range(1, 13)]
    gt = GroundTruth([{"label": "Mouse", "t_cross": s + 0.5, "y": 0.5} for s in range(1, 14)], fps=30.0)
    g = against_ground_truth(load_decisions(_write(tmp_path / "d.jsonl", ds)), gt, target_accuracy=0.9)
    assert g["score"]["matched"] == 12 and g["score"]["missed"] == 1
    assert g["n_scored"] == 12 and g["top_label_accuracy"] == 0.75
    conf = g["recommended"]["confidence"]
    # accepting s <= 10 (confidence >= 0.81): 9 of 10 right = 90%; 11 and 12 would lower it
    assert (conf["threshold"], conf["n_accepted"], conf["config_key"]) == (0.81, 10, "vote.min_confidence")
    assert g["recommended"]["margin"]["threshold"] is None  # all margins tie: nothing to separate


def test_ground_truth_needs_fps(tmp_path):
    from ewaste_stream.analysis.decisions_report import GroundTruth

    p = tmp_path / "x.gt.jsonl"
    p.write_text('{"label": "Mouse", "t_cross": 1.0, "y": 0.5}\n')
    with pytest.raises(DecisionLogError, match="--fps"):
        GroundTruth.read(p)
    (tmp_path / "x.meta.json").write_text('{"fps": 25, "t_last_frame": 9.96}')
    gt = GroundTruth.read(p)
    assert (gt.fps, gt.t_last, len(gt.rows)) == (25.0, 9.96, 1)
