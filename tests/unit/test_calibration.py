"""Temperature scaling on tables with a known answer."""

import math

import numpy as np
import pytest

from ewaste_stream.training.calibration import fit_temperature, fit_temperature_to, nll_at, softmax


@pytest.mark.parametrize("logits, t, expected", [
    ([[0.0, math.log(3)]], 1.0, [0.25, 0.75]),
    ([[0.0, 2 * math.log(3)]], 2.0, [0.25, 0.75]),
    ([[5.0, 5.0]], 0.1, [0.5, 0.5]),
])
def test_softmax_with_temperature(logits, t, expected):
    assert softmax(np.array(logits), t)[0] == pytest.approx(expected)


@pytest.mark.parametrize("share_right, expected_t", [
    (0.75, 2 / math.log(3)),   # sigmoid(2 / T) = 0.75
    (0.9, 2 / math.log(9)),    # sigmoid(2 / T) = 0.9
])
def test_fit_recovers_the_nll_optimal_temperature(share_right, expected_t):
    # every row has logits [0, 2]; a share of them is labelled 1: the NLL optimum is sigmoid(2/T) = share
    n = 100
    logits = np.tile([0.0, 2.0], (n, 1))
    labels = np.array([1] * int(n * share_right) + [0] * (n - int(n * share_right)))
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(expected_t, rel=1e-3)
    assert nll_at(logits, labels, t) <= nll_at(logits, labels, 1.0)


def test_overconfident_logits_get_t_above_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    logits = rng.normal(0, 1, (200, 3))
    logits[np.arange(200), labels] += 1.0
    assert fit_temperature(logits * 10, labels) > 1.0


@pytest.mark.parametrize("logits, labels, exc", [
    (np.zeros((0, 2)), np.zeros(0, int), ValueError),
    (np.zeros((3, 2)), np.zeros(2, int), ValueError),
    (np.zeros(3), np.zeros(3, int), ValueError),
])
def test_bad_input_is_refused(logits, labels, exc):
    with pytest.raises(exc):
        fit_temperature(logits, labels)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError):
        softmax(np.zeros((1, 2)), 0.0)


@pytest.mark.parametrize("t_ref", [0.5, 1.0, 2.5])
def test_fit_to_reference_probabilities_recovers_their_temperature(t_ref):
    """An approximation whose logits are the reference's scaled by 1/t_ref is calibrated back to it."""
    z = np.random.default_rng(3).normal(0, 3, (200, 5))
    target = softmax(z, 1.0)
    assert fit_temperature_to(z / t_ref, target) == pytest.approx(1.0 / t_ref, rel=1e-3)


def test_fit_to_needs_matching_shapes():
    with pytest.raises(ValueError, match="one shape"):
        fit_temperature_to(np.zeros((3, 4)), np.full((3, 5), 0.2))
