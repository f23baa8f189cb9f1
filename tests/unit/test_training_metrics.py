"""Training/evaluation metrics (ewaste_stream.training.metrics) on hand-computed tables.
(tests/unit/test_metrics.py is the daemon's Prometheus metrics.)"""

import numpy as np
import pytest

from ewaste_stream.training.metrics import (classification_report, confusion, expected_calibration_error,
                                            normalise_rows, roc_auc_ovr, summary)

# labels [0,0,1,1], preds [0,1,1,0], confidences [0.9,0.6,0.8,0.7]
LABELS = np.array([0, 0, 1, 1])
PROBS = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])


def test_report_on_a_hand_computed_table():
    r = classification_report(LABELS, PROBS, ["a", "b"], paths=["p0", "p1", "p2", "p3"])
    assert r["n"] == 4
    assert r["accuracy"] == pytest.approx(0.5)
    assert r["confusion"] == [[1, 1], [1, 1]]
    assert r["confusion_normalised"] == [[0.5, 0.5], [0.5, 0.5]]
    assert r["macro"]["f1"] == pytest.approx(0.5)
    assert r["per_class"]["a"]["precision"] == pytest.approx(0.5)
    assert r["per_class"]["b"]["support"] == 2
    assert r["per_class"]["a"]["mean_confidence"] == pytest.approx((0.9 + 0.6) / 2)
    assert r["mean_confidence"] == pytest.approx(0.75)
    assert [m["path"] for m in r["misclassified"]] == ["p1", "p3"]
    assert r["misclassified"][0] == {"path": "p1", "label": "a", "pred": "b", "confidence": 0.6}
    # class-1 scores 0.1, 0.6 (negatives) vs 0.8, 0.3 (positives): 3 of 4 pairs ordered right
    assert r["roc_auc_ovr"] == pytest.approx(0.75)
    assert summary(r)["accuracy"] == 0.5


def test_weighted_average_follows_support():
    labels = np.array([0, 0, 0, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    r = classification_report(labels, probs, ["a", "b"])
    # class a: P=1, R=2/3, F1=0.8; class b: P=0.5, R=1, F1=2/3
    assert r["macro"]["f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert r["weighted"]["f1"] == pytest.approx((3 * 0.8 + 2 / 3) / 4)


@pytest.mark.parametrize("labels, probs, bins, expected", [
    (LABELS, PROBS, 2, 0.25),                                   # one bin: acc 0.5 vs conf 0.75
    (np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]), 15, 0.0),  # confident and right
    (np.array([1, 0]), np.array([[1.0, 0.0], [0.0, 1.0]]), 15, 1.0),  # confident and wrong
    # bins of 0.5: {0.5 (wrong)} in bin 0 -> |0-0.5|, {0.9 right, 0.9 wrong} in bin 1 -> |0.5-0.9|
    (np.array([0, 0, 1]), np.array([[0.5, 0.5], [0.9, 0.1], [0.9, 0.1]]), 2, (0.5 + 2 * 0.4) / 3),
])
def test_ece(labels, probs, bins, expected):
    assert expected_calibration_error(labels, probs, n_bins=bins) == pytest.approx(expected)


@pytest.mark.parametrize("labels, probs, exc", [
    (np.array([0, 1, 1]), np.ones((2, 2)) / 2, ValueError),   # lengths differ
    (np.array([0, 2]), np.ones((2, 2)) / 2, ValueError),      # label out of range
    (np.array([0, 1]), np.ones(2), ValueError),               # probs not 2-D
])
def test_bad_input_is_refused(labels, probs, exc):
    with pytest.raises(exc):
        classification_report(labels, probs, ["a", "b"])


def test_confusion_and_row_normalisation_with_an_absent_class():
    cm = confusion([0, 0, 2], [0, 2, 2], 3)
    assert cm.tolist() == [[1, 0, 1], [0, 0, 0], [0, 0, 1]]
    assert normalise_rows(cm).tolist() == [[0.5, 0.0, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


def test_roc_auc_needs_two_classes_present():
    assert roc_auc_ovr(np.array([1, 1]), np.array([[0.2, 0.8], [0.3, 0.7]])) is None
    assert roc_auc_ovr(np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]])) == pytest.approx(1.0)


def test_empty_set_reports_zero_items():
    assert classification_report(np.zeros(0, int), np.zeros((0, 2)), ["a", "b"]) == {"n": 0}
