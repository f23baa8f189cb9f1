"""Uncertainty scores, risk-coverage and the recommended reject threshold, on hand-made tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ewaste_stream.analysis.uncertainty import (confidence, entropy, margin, recommend_threshold, risk_coverage,
                                                summarise)

# score, correct: sorted by score the outcomes are  0.95 ok, 0.9 ok, 0.8 WRONG, 0.7 ok, 0.6 WRONG, 0.5 ok
SCORES = np.array([0.5, 0.9, 0.6, 0.95, 0.8, 0.7])
CORRECT = np.array([True, True, False, True, False, True])


def test_risk_coverage_hand_table():
    rc = risk_coverage(SCORES, CORRECT)
    np.testing.assert_allclose(rc.thresholds, [0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    np.testing.assert_array_equal(rc.n_accepted, [6, 5, 4, 3, 2, 1])
    np.testing.assert_allclose(rc.coverage, [1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    np.testing.assert_allclose(rc.accuracy, [4 / 6, 3 / 5, 3 / 4, 2 / 3, 1, 1])


def test_ties_are_one_threshold():
    rc = risk_coverage(np.array([0.9, 0.9, 0.5, 0.5]), np.array([True, False, True, True]))
    np.testing.assert_allclose(rc.thresholds, [0.5, 0.9])
    np.testing.assert_array_equal(rc.n_accepted, [4, 2])
    np.testing.assert_allclose(rc.accuracy, [0.75, 0.5])


def test_at_coverage_and_aurc():
    rc = risk_coverage(SCORES, CORRECT)
    pt = rc.at_coverage(0.7)  # largest coverage <= 70%: 4 of 6 at threshold 0.7
    assert pt == {"threshold": 0.7, "coverage": pytest.approx(4 / 6), "accuracy": 0.75, "n_accepted": 4}
    # risk per accepted step, weighted by 1/6 coverage each: 0, 0, 1/3, 1/4, 2/5, 1/3
    assert rc.aurc() == pytest.approx((0 + 0 + 1 / 3 + 1 / 4 + 2 / 5 + 1 / 3) / 6)


@pytest.mark.parametrize("target,min_accepted,threshold,n_accepted", [
    (0.75, 1, 0.7, 4),  # 0.7 is the smallest threshold with >= 75% (0.5 and 0.6 are below)
    (0.6, 1, 0.0, 6),  # everything accepted already reaches 60%: no reject needed
    (1.0, 1, 0.9, 2),
    (1.0, 3, None, 4),  # 100% only with 2 accepted, fewer than 3: not reachable -> best with >= 3
])
def test_recommend_threshold(target, min_accepted, threshold, n_accepted):
    rec = recommend_threshold(SCORES, CORRECT, "confidence", target, min_accepted=min_accepted)
    assert rec.threshold == threshold
    assert rec.n_accepted == n_accepted and rec.n_total == 6
    assert rec.reject_rate == pytest.approx(1 - n_accepted / 6)
    assert rec.config_key == "vote.min_confidence"
    assert ("no threshold reaches" in rec.describe()) == (threshold is None)


@pytest.mark.parametrize("scores,correct,kwargs,error", [
    (np.array([]), np.array([], bool), {}, ValueError),
    (np.array([0.5, 0.6]), np.array([True]), {}, ValueError),
    (SCORES, CORRECT, {"score": "entropy"}, ValueError),
    (SCORES, CORRECT, {"target_accuracy": 0.0}, ValueError),
])
def test_bad_input(scores, correct, kwargs, error):
    with pytest.raises(error):
        recommend_threshold(scores, correct, **kwargs)


def test_scores_on_known_rows():
    p = np.array([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.6, 0.3, 0.1, 0.0]])
    np.testing.assert_allclose(confidence(p), [1.0, 0.25, 0.6])
    np.testing.assert_allclose(margin(p), [1.0, 0.0, 0.3])
    np.testing.assert_allclose(entropy(p), [0.0, 1.0, -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1))
                                            / math.log(4)], atol=1e-9)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        entropy(np.array([0.5, 0.5]))


def test_summarise_recommends_for_both_config_keys():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=200)
    logits = rng.normal(size=(200, 3))
    logits[np.arange(200), labels] += rng.uniform(0, 4, size=200)  # confident rows are mostly right
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    s = summarise(probs, labels, target_accuracy=0.95)
    assert s["accuracy"] == pytest.approx(float((probs.argmax(1) == labels).mean()))
    for name, key in (("confidence", "vote.min_confidence"), ("margin", "vote.min_margin")):
        rec = s["recommended"][name]
        assert rec["config_key"] == key
        assert rec["threshold"] is None or rec["accuracy"] >= 0.95
        assert s["risk_coverage"][name]["at_coverage"]["1.00"]["coverage"] == 1.0


def test_operating_point_applies_both_thresholds_together():
    from ewaste_stream.analysis.uncertainty import operating_point

    p = np.array([[0.9, 0.1, 0.0], [0.5, 0.45, 0.05], [0.7, 0.2, 0.1], [0.3, 0.6, 0.1]])
    labels = np.array([0, 1, 0, 1])  # row 1 is wrong (0.5 vs 0.45), the others right
    op = operating_point(p, labels, min_confidence=0.6, min_margin=0.2)
    assert (op["n_accepted"], op["errors_accepted"], op["errors_rejected"]) == (3, 0, 1)
    assert op["accuracy"] == 1.0 and op["reject_rate"] == 0.25
    assert operating_point(p, labels, 0.95, 0.0)["accuracy"] is None  # nothing accepted
