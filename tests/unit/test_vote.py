"""Voting: fused probabilities and the reject bin, table-driven."""

from __future__ import annotations

import numpy as np
import pytest

from ewaste_stream.config import VoteSection
from ewaste_stream.messages import Observation, RejectReason
from ewaste_stream.vote import fuse, top_two, vote

CLASSES = ("A", "B", "C")


def _obs(p, camera="cam0", q=1.0):
    return Observation(1, camera, 0.0, np.asarray(p, np.float32), q)


@pytest.mark.parametrize("probs,weights,expected,exc", [
    ([[0.8, 0.1, 0.1]], None, [0.8, 0.1, 0.1], None),
    ([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]], None, [0.5, 0.4, 0.1], None),
    ([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]], [3.0, 1.0], [0.65, 0.25, 0.1], None),
    ([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]], [1.0, 0.0], [0.8, 0.1, 0.1], None),
    (np.zeros((0, 3)), None, None, ValueError),
    ([[0.5, 0.5]], [0.0], None, ValueError),
    ([[0.5, 0.5]], [-1.0], None, ValueError),
    ([[0.5, 0.5]], [1.0, 1.0], None, ValueError),
])
def test_fuse(probs, weights, expected, exc):
    if exc:
        with pytest.raises(exc):
            fuse(np.asarray(probs), weights)
    else:
        assert fuse(np.asarray(probs), weights) == pytest.approx(expected)


def test_top_two():
    assert top_two(np.array([0.2, 0.5, 0.3])) == (1, 0.5, pytest.approx(0.2))
    assert top_two(np.array([0.5, 0.5]))[0] == 0  # ties: the first class


CFG = VoteSection(min_confidence=0.6, min_margin=0.2, min_views=1, lost_min_confidence=0.85,
                  single_camera_min_confidence=0.8)


@pytest.mark.parametrize("views,kw,cfg,label,reason", [
    ([[0.9, 0.05, 0.05]], {}, CFG, "A", None),
    ([[0.9, 0.05, 0.05], [0.7, 0.2, 0.1]], {}, CFG, "A", None),
    ([[0.5, 0.3, 0.2]], {}, CFG, "reject", RejectReason.LOW_CONFIDENCE),
    ([[0.55, 0.4, 0.05]], {}, VoteSection(min_confidence=0.5, min_margin=0.2), "reject", RejectReason.LOW_MARGIN),
    ([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05]], {}, CFG, "reject", RejectReason.LOW_CONFIDENCE),  # disagreement
    ([], {}, CFG, "reject", RejectReason.TOO_FEW_VIEWS),
    ([[0.9, 0.05, 0.05]], {}, VoteSection(min_views=2), "reject", RejectReason.TOO_FEW_VIEWS),
    ([[0.9, 0.05, 0.05]], {"late": True}, CFG, "reject", RejectReason.LATE),
    ([[0.9, 0.05, 0.05]], {"lost": True}, CFG, "A", None),  # lost but strong votes: sorted
    ([[0.8, 0.1, 0.1]], {"lost": True}, CFG, "reject", RejectReason.LOST_TRACK),
    ([[0.75, 0.15, 0.1]], {"cameras": 2}, CFG, "reject", RejectReason.LOW_CONFIDENCE),  # one of two cameras
    ([[0.75, 0.15, 0.1]], {"cameras": 1}, CFG, "A", None),
    ([[0.75, 0.15, 0.1]], {"cameras": 2}, VoteSection(), "A", None),  # no stricter threshold configured
])
def test_vote_table(views, kw, cfg, label, reason):
    res = vote([_obs(p) for p in views], CLASSES, cfg, **kw)
    assert (res.label, res.reject_reason) == (label, reason)
    assert res.views == len(views)
    assert res.class_index == (-1 if reason else CLASSES.index(label))
    assert sum(res.probs.values()) == pytest.approx(1.0)
    assert 0.0 <= res.margin <= res.confidence <= 1.0


def test_two_cameras_pool_views_and_count_them():
    obs = [_obs([0.75, 0.15, 0.1], "cam0"), _obs([0.85, 0.1, 0.05], "cam1"), _obs([0.8, 0.1, 0.1], "cam1")]
    res = vote(obs, CLASSES, CFG, cameras=2)
    assert res.label == "A" and res.views_by_camera == {"cam0": 1, "cam1": 2}


def test_camera_weights_and_quality_weight_the_mean():
    obs = [_obs([0.9, 0.1, 0.0], "cam0"), _obs([0.1, 0.9, 0.0], "cam1", q=1.0)]
    cfg = VoteSection(camera_weights={"cam1": 3.0})
    assert vote(obs, ("A", "B", "C"), cfg).top_label == "B"
    obs[1] = _obs([0.1, 0.9, 0.0], "cam1", q=0.25)
    assert vote(obs, ("A", "B", "C"), cfg).top_label == "A"  # 3 x 0.25 < 1


def test_wrong_number_of_classes_is_an_error():
    with pytest.raises(ValueError, match="classes"):
        vote([_obs([0.5, 0.5])], CLASSES, CFG)


@pytest.mark.parametrize("rule", ["mean", "product"])
def test_one_camera_gives_the_same_verdict_under_either_rule(rule):
    obs = [_obs([0.7, 0.2, 0.1]), _obs([0.5, 0.4, 0.1], q=0.5)]
    res = vote(obs, CLASSES, VoteSection(camera_fusion=rule))
    assert res.probs["A"] == pytest.approx((0.7 + 0.5 * 0.5) / 1.5)


def test_product_rule_agreeing_cameras_are_more_confident_than_either():
    obs = [_obs([0.65, 0.25, 0.1], "cam0"), _obs([0.6, 0.2, 0.2], "cam1")]
    cfg = VoteSection(min_confidence=0.7, min_margin=0.2, camera_fusion="mean")
    assert vote(obs, CLASSES, cfg, cameras=2).reject_reason == RejectReason.LOW_CONFIDENCE
    res = vote(obs, CLASSES, cfg.model_copy(update={"camera_fusion": "product"}), cameras=2)
    assert res.label == "A" and res.confidence > 0.65
    # by hand: 0.65*0.6 / (0.65*0.6 + 0.25*0.2 + 0.1*0.2)
    assert res.probs["A"] == pytest.approx(0.39 / (0.39 + 0.05 + 0.02))


def test_product_rule_disagreeing_cameras_go_to_the_reject_bin():
    obs = [_obs([0.8, 0.15, 0.05], "cam0"), _obs([0.15, 0.8, 0.05], "cam1")]
    res = vote(obs, CLASSES, VoteSection(camera_fusion="product"), cameras=2)
    assert res.label == "reject" and res.reject_reason in (RejectReason.LOW_CONFIDENCE, RejectReason.LOW_MARGIN)


def test_product_rule_a_zero_is_a_strong_vote_not_a_veto():
    obs = [_obs([1.0, 0.0, 0.0], "cam0"), _obs([0.0, 1.0, 0.0], "cam1"), _obs([0.0, 1.0, 0.0], "cam1")]
    res = vote(obs, CLASSES, VoteSection(camera_fusion="product"), cameras=2)
    assert np.isfinite(list(res.probs.values())).all() and sum(res.probs.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("cams, fusion, fused_min, label", [
    (("cam0", "cam1"), "product", 0.98, "reject"),  # pooled by the product (0.97): its own, stricter threshold
    (("cam0", "cam1"), "product", None, "A"),        # not set: min_confidence
    (("cam0", "cam1"), "mean", 0.95, "A"),           # the mean rule never uses it
    (("cam0", "cam0"), "product", 0.95, "A"),        # one camera saw it: nothing was multiplied
])
def test_fused_min_confidence_applies_to_product_pooled_items_only(cams, fusion, fused_min, label):
    obs = [_obs([0.8, 0.1, 0.1], cams[0]), _obs([0.8, 0.1, 0.1], cams[1])]
    cfg = VoteSection(camera_fusion=fusion, fused_min_confidence=fused_min)
    res = vote(obs, CLASSES, cfg, cameras=2 if cams[0] != cams[1] else 1)
    assert res.label == label
    if label == "reject":
        assert res.reject_reason == RejectReason.LOW_CONFIDENCE and 0.96 < res.confidence < 0.98
