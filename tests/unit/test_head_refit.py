"""Refitting a classifier head on video crops: which views are cut, that the fit corrects a head's
bias without drifting its weights, and that videos of the val photos are refused."""

import json

import numpy as np
import pytest

from ewaste_stream.training.data import DatasetError
from ewaste_stream.training.head_refit import item_views, refit_head, video_prefix, video_views

CLASSES = ("Battery", "Keyboard")


def _row(item, label, frame, box):
    return {"item": item, "label": label, "frame_at_line": frame, "bbox_at_line": box}


def test_item_views_follow_the_item_back_along_the_belt():
    rows = [_row(1, "Keyboard", 40, [900, 10, 1000, 90]),
            _row(2, "Battery", 5, [900, 100, 960, 160]),   # frame 5 - 10 < 0: one view only
            _row(3, "Battery", 40, [20, 100, 120, 200]),   # the earlier view would start left of the picture
            _row(4, "Mouse", 40, [500, 10, 560, 90])]      # not a class of the model
    views = item_views(rows, CLASSES, speed=36.0, width=1280, frames=2, step=10)
    assert [(v.item, v.frame, v.box, v.label) for v in views] == [
        (1, 40, (900, 10, 1000, 90), 1), (1, 30, (540, 10, 640, 90), 1),
        (2, 5, (900, 100, 960, 160), 0), (3, 40, (20, 100, 120, 200), 0)]
    with pytest.raises(ValueError):
        item_views(rows, CLASSES, 36.0, 1280, frames=0)


def _data(n, rng, shift):
    """Two Gaussian classes in 4-d; ``shift`` moves every feature (a change of look)."""
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, 4)).astype(np.float32)
    x[:, 0] += np.where(y == 1, 2.0, -2.0) + shift
    return x, y


def test_refit_corrects_the_bias_and_stays_near_the_old_weights():
    rng = np.random.default_rng(0)
    w0 = np.array([[-1.0, 0, 0, 0], [1.0, 0, 0, 0]], np.float32)
    b0 = np.zeros(2, np.float32)
    x, y = _data(2000, rng, shift=2.5)  # the old head calls most of class 0 class 1 now
    old = ((x @ w0.T + b0).argmax(1) == y).mean()
    w, b = refit_head(w0, b0, x, y, l2=100.0)
    new = ((x @ w.T + b).argmax(1) == y).mean()
    assert old < 0.75 and new > 0.95
    assert np.abs(w - w0).max() < 0.02  # a strong pull: the bias did the work
    w2, b2 = refit_head(w0, b0, x, y, l2=100.0)
    assert np.array_equal(w, w2) and np.array_equal(b, b2)  # deterministic
    # weighted samples: only class-1 samples count -> everything leans to class 1
    wl, bl = refit_head(w0, b0, x, y, sample_weight=(y == 1).astype(np.float32), l2=0.0)
    assert ((x @ wl.T + bl).argmax(1) == 1).mean() > 0.9
    with pytest.raises(ValueError):
        refit_head(w0, b0, x[:10], y[:5])
    with pytest.raises(ValueError):
        refit_head(w0, b0, x, y, l2=-1.0)


def test_videos_of_the_val_photos_are_refused(tmp_path):
    val = tmp_path / "val"
    val.mkdir()
    prefix = tmp_path / "v" / "belt"
    prefix.parent.mkdir()
    (tmp_path / "v" / "belt.cam0.mp4").write_bytes(b"")
    (tmp_path / "v" / "belt.gt.jsonl").write_text(json.dumps(_row(1, "Battery", 3, [0, 0, 10, 10])) + "\n")
    (tmp_path / "v" / "belt.meta.json").write_text(json.dumps({"images": str(val), "belt_speed_px_per_frame": 4,
                                                               "width": 64}))
    with pytest.raises(DatasetError, match="val photos"):
        video_views(prefix, CLASSES, 1, 1, forbidden_images=val)
    with pytest.raises(DatasetError, match="no item view"):  # an unreadable video is named too
        video_views(f"{prefix}.cam0.mp4", CLASSES, 1, 1, forbidden_images=tmp_path / "other")
    assert video_prefix("a/belt.gt.jsonl") == video_prefix("a/belt.meta.json") == video_prefix("a/belt") == "a/belt"


def test_a_refit_of_a_refit_counts_instead_of_stacking_suffixes():
    from ewaste_stream.testing import load_tool

    v = load_tool("refit_head").refit_version
    assert v("soup3") == "soup3-headrefit"
    assert v("soup3-headrefit") == "soup3-headrefit2" and v("soup3-headrefit9") == "soup3-headrefit10"
    assert v("headrefit-x") == "headrefit-x-headrefit"


def _lite0(classes: int = 3):
    import timm
    import torch

    torch.manual_seed(0)
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=classes).eval()


def test_top_blocks_tune_trains_only_the_top_and_learns():
    """``tune_top`` on the cached output of the stages below: the top 2 stages, conv_head, bn2 and
    the head move, and the loss falls; the stem, the stages below and every batch norm's running
    statistics stay as they were."""
    import torch

    from ewaste_stream.model.preprocessing import preprocess
    from ewaste_stream.training.head_refit import below_top, top_logits, top_modules, tune_top

    class _Info:  # what preprocess reads
        input_size, mean, std, interpolation = 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear"

    model = _lite0()
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 32)
    crops = [np.clip(rng.normal(60 + 70 * c, 20, (32, 32, 3)), 0, 255).astype(np.uint8) for c in y]  # dark .. bright
    x = below_top(model, _Info(), crops, 2)
    assert x.dtype == np.float16 and x.shape[0] == len(y) and x.shape[1] == model.blocks[4][-1].conv_pwl.out_channels
    with torch.no_grad():  # the cached input gives the model's own logits
        full = model(torch.from_numpy(preprocess(crops[:4], _Info())))
        np.testing.assert_allclose(top_logits(model, torch.from_numpy(x[:4].astype(np.float32)), 2), full, atol=0.05)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    top = {id(p) for m in top_modules(model, 2) for p in m.parameters()}
    names = {n for n, p in model.named_parameters() if id(p) in top}
    losses = tune_top(model, x, y, 2, lr=3e-3, epochs=6, batch=16)
    assert losses[-1] < 0.8 * losses[0]
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and moved <= names  # only trained parameters moved: no running statistic, nothing below
    assert any(k.startswith("blocks.5.") for k in moved) and any(k.startswith("classifier.") for k in moved)
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("k", [0, 7])
def test_top_blocks_outside_the_model_are_refused(k):
    from ewaste_stream.training.head_refit import top_modules

    with pytest.raises(ValueError, match="top blocks must be in 1..6"):
        top_modules(_lite0(), k)


def test_a_model_without_blocks_has_no_top_to_tune():
    import torch

    from ewaste_stream.training.head_refit import top_modules

    with pytest.raises(ValueError, match="only EfficientNet"):
        top_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)), 1)


def test_a_top_tune_is_versioned_by_its_own_tag():
    from ewaste_stream.testing import load_tool

    v = load_tool("refit_head").refit_version
    assert v("soup3-headrefit2", "top2blocks") == "soup3-headrefit2-top2blocks"
    assert v("x-top2blocks", "top2blocks") == "x-top2blocks2"
