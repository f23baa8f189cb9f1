"""Refit a model's classifier head on what the line's camera sees: crops of simulated belt videos
made of **train** photos, plus the train photos themselves. The crops are either the pipeline's own
views (:func:`pipeline_views`: it replays the video, and each crop it classifies is labelled with
the item its track was decided as) or cut at the ground truth's boxes (:func:`video_views`).

The backbone is kept. The head (weights and bias of the last linear layer) is refitted by
cross-entropy on the penultimate features, with an L2 pull of the weights toward the head it
starts from (``l2``), so a few thousand crops correct the head's bias on the belt's look
(neighbours at a crop's edge, motion blur, the codec, the belt's light) without forgetting the
photos. The bias is not pulled: it is what moves most (the belt makes some classes look like
others). See models/README.md, "Head refitted on belt-video crops".

:func:`tune_top` goes one step further for EfficientNet-style models: the last block stages,
``conv_head`` and the head are trained together (AdamW, L2 toward the start) on the cached output
of the stages below them (:func:`below_top`); see models/README.md, "Top blocks tuned on the
pipeline's views".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .data import DatasetError
from .video_crops import cut_boxes, read_gt


@dataclass(frozen=True, slots=True)
class ItemView:
    """One crop to cut: ``box`` (full-frame px) in frame ``frame`` of a video, label index ``label``."""

    frame: int
    box: tuple[int, int, int, int]
    label: int
    item: int


def item_views(rows: Iterable[dict], class_names: Sequence[str], speed: float, width: int,
               frames: int = 2, step: int = 10) -> list[ItemView]:
    """Views of each ground-truth item: at the frame it reaches the decision line and ``frames - 1``
    earlier frames, ``step`` frames apart (its box moved back by the belt's ``speed`` px/frame), as
    the pipeline's views are spread along an item's path. Views whose box leaves the picture
    (``width`` px) and items of other classes are left out."""
    if frames < 1 or step < 1:
        raise ValueError(f"frames and step must be >= 1, got {frames} and {step}")
    out = []
    for r in rows:
        if r.get("label") not in class_names or r.get("frame_at_line") is None or not r.get("bbox_at_line"):
            continue
        x0, y0, x1, y1 = r["bbox_at_line"]
        for k in range(frames):
            f = int(r["frame_at_line"]) - k * step
            dx = int(round(-speed * k * step))
            if f < 0 or x0 + dx < 0 or x1 + dx > width:
                continue
            out.append(ItemView(f, (x0 + dx, y0, x1 + dx, y1), class_names.index(r["label"]), int(r["item"])))
    return out


def video_prefix(path: str | Path) -> str:
    """``PREFIX`` of a simulated video given as the prefix itself or as one of its files
    (``PREFIX.cam0.mp4``, ``PREFIX.gt.jsonl``, ``PREFIX.meta.json``), so a shell glob can name them."""
    p = str(path)
    for suffix in (".cam0.mp4", ".gt.jsonl", ".meta.json"):
        if p.endswith(suffix):
            return p[: -len(suffix)]
    return p


def _training_video(prefix: str, forbidden_images: Path | None) -> tuple[list[dict], dict]:
    """Ground-truth rows and meta of ``PREFIX``; a video made of ``forbidden_images`` (the val
    folder) is refused: its items are what the refit is checked on."""
    rows, meta = read_gt(prefix)
    images = Path(meta.get("images", ""))
    if forbidden_images is not None and images.resolve() == Path(forbidden_images).resolve():
        raise DatasetError(f"--videos {prefix}: made of {images}, the val photos; make training videos of the "
                           "train photos (tools/make_belt_video.py --images .../train)")
    return rows, meta


def video_views(prefix: str | Path, class_names: Sequence[str], frames: int, step: int,
                forbidden_images: Path | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """RGB crops and labels of :func:`item_views` for the video ``PREFIX.cam0.mp4`` (cut at the
    ground truth's boxes). A video made of ``forbidden_images`` (the val folder) is refused."""
    prefix = video_prefix(prefix)
    rows, meta = _training_video(prefix, forbidden_images)
    views = item_views(rows, class_names, float(meta["belt_speed_px_per_frame"]), int(meta["width"]), frames, step)
    cut = cut_boxes(f"{prefix}.cam0.mp4", [(v.frame, v.box) for v in views])
    if not cut:
        raise DatasetError(f"--videos {prefix}: no item view could be cut (is {prefix}.cam0.mp4 a readable video?)")
    return [c for _, c in cut], np.array([views[i].label for i, _ in cut], dtype=np.int64)


def pipeline_views(prefix: str | Path, config, classifier, forbidden_images: Path | None = None,  # noqa: ANN001
                   ) -> tuple[list[np.ndarray], np.ndarray]:
    """The crops the pipeline itself classifies when it replays ``PREFIX.cam0.mp4`` with ``config``
    and ``classifier`` (its own views along each item's path, the other items painted out: exactly
    what the classifier is shown on the line), and their labels: the ground-truth item that the
    scorer matches to the decision of the view's track. Views of tracks whose decision matches no
    item (phantoms, duplicates) are left out. A video made of ``forbidden_images`` is refused."""
    from ..replay import ReplayError, ReplayHooks, replay_files
    from ..scoring import matched_pairs

    prefix = video_prefix(prefix)
    rows, meta = _training_video(prefix, forbidden_images)
    names = list(classifier.class_names)
    views: list[tuple[int, np.ndarray]] = []
    decisions: list = []
    try:
        summary = replay_files([f"{prefix}.cam0.mp4"], config, classifier, ReplayHooks(
            on_decision=decisions.append, on_view=lambda job: views.append((job.track_id, job.image()))))
    except ReplayError as exc:
        raise DatasetError(f"--videos {exc}") from None
    if summary.errors:
        raise DatasetError(f"--videos {prefix}.cam0.mp4: {'; '.join(map(str, summary.errors))}")
    label = {decisions[d].item_id: names.index(rows[g]["label"])
             for d, g in matched_pairs(rows, decisions, float(meta["fps"])).items() if rows[g].get("label") in names}
    kept = [(label[track], crop) for track, crop in views if track in label]
    if not kept:
        raise DatasetError(f"--videos {prefix}: the pipeline classified no view of a matched item "
                           f"({len(views)} views, {len(decisions)} decisions; is it a belt video of these classes?)")
    return [c for _, c in kept], np.array([y for y, _ in kept], dtype=np.int64)


def penultimate(model, info, crops: Sequence[np.ndarray], batch: int = 64) -> np.ndarray:
    """The features the head sees (timm ``forward_head(..., pre_logits=True)``), float32 [N, F]."""
    import torch

    from ..model.preprocessing import preprocess

    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            x = torch.from_numpy(preprocess(crops[i:i + batch], info))
            out.append(model.forward_head(model.forward_features(x), pre_logits=True).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.num_features), np.float32)


def refit_head(w0: np.ndarray, b0: np.ndarray, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None,
               l2: float = 0.1, max_iter: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias minimising the (weighted) mean cross-entropy of ``x @ w.T + b`` on ``y``
    plus ``l2 * ||w - w0||^2``, started from (``w0``, ``b0``). L-BFGS, deterministic."""
    import torch

    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"refit_head: {len(x)} features for {len(y)} labels")
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    sw = torch.ones(len(yt)) if sample_weight is None else torch.from_numpy(np.asarray(sample_weight, np.float32))
    w_ref = torch.from_numpy(np.asarray(w0, np.float32))
    w = w_ref.clone().requires_grad_(True)
    b = torch.from_numpy(np.asarray(b0, np.float32)).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        ce = torch.nn.functional.cross_entropy(xt @ w.T + b, yt, reduction="none")
        loss = (ce * sw).sum() / sw.sum() + l2 * ((w - w_ref) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


# --- the top blocks too (``tools/refit_head.py --top-blocks K``) ---------------------------------------------------

def top_modules(model, k: int) -> list:
    """The modules a top-``k`` tune trains: the last ``k`` block stages, ``conv_head``, ``bn2`` and
    the classifier, of a timm EfficientNet / MobileNet-style model. ValueError for other models."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or not hasattr(model, "conv_head") or not hasattr(model, "bn2"):
        raise ValueError(f"{type(model).__name__}: only EfficientNet/MobileNet-style models (blocks, conv_head) "
                         "have top blocks to tune; use --top-blocks 0 (the head only)")
    if not 1 <= k < len(blocks):
        raise ValueError(f"top blocks must be in 1..{len(blocks) - 1} for {type(model).__name__}, got {k}")
    return [*blocks[len(blocks) - k:], model.conv_head, model.bn2, model.get_classifier()]


def below_top(model, info, crops: Sequence[np.ndarray], k: int, batch: int = 64) -> np.ndarray:
    """What the top ``k`` block stages see: the output of the stem and every stage below them,
    float16 [N, C, H, W] (cached once; the tune runs on it)."""
    import torch

    from ..model.preprocessing import preprocess

    top_modules(model, k)
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            x = model.bn1(model.conv_stem(torch.from_numpy(preprocess(crops[i:i + batch], info))))
            for stage in model.blocks[:len(model.blocks) - k]:
                x = stage(x)
            out.append(x.half().numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.float16)


def top_logits(model, x, k: int):  # noqa: ANN001, ANN201
    """Logits of a ``below_top`` batch (a float tensor) through the top ``k`` stages and the head."""
    for stage in model.blocks[len(model.blocks) - k:]:
        x = stage(x)
    return model.forward_head(model.bn2(model.conv_head(x)))


def tune_top(model, x: np.ndarray, y: np.ndarray, k: int, sample_weight: np.ndarray | None = None, lr: float = 2e-4,
             epochs: int = 4, l2: float = 0.01, batch: int = 64, seed: int = 0,
             log=None) -> list[float]:  # noqa: ANN001
    """Train the top ``k`` stages, ``conv_head``, ``bn2``'s affine and the classifier of ``model``
    in place on ``x`` (:func:`below_top`) and labels ``y``: AdamW with a one-cycle learning rate,
    label smoothing 0.1, the (weighted) cross-entropy plus ``l2`` x the squared distance of the
    trained weights from where they started (so a few thousand crops move the model toward the
    belt without forgetting the photos). The batch norms keep their running statistics. The rest
    of the model is not touched. ``seed`` fixes the batches' order. Returns the mean loss per epoch."""
    import torch

    if len(x) != len(y) or len(y) < batch:
        raise ValueError(f"tune_top: {len(x)} inputs for {len(y)} labels (at least one batch of {batch} needed)")
    if epochs < 1 or lr <= 0 or l2 < 0:
        raise ValueError(f"tune_top: epochs >= 1, lr > 0 and l2 >= 0 needed, got {epochs}, {lr}, {l2}")
    torch.manual_seed(seed)
    params = [p for mod in top_modules(model, k) for p in mod.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    start = [p.detach().clone() for p in params]
    sw = np.ones(len(y), np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    per_epoch = len(y) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * per_epoch, pct_start=0.1)
    rng = np.random.default_rng(seed)
    losses = []
    model.eval()  # the batch norms keep their statistics
    for epoch in range(epochs):
        order, total = rng.permutation(len(y)), 0.0
        for i in range(per_epoch):
            b = order[i * batch:(i + 1) * batch]
            w = torch.from_numpy(sw[b])
            ce = torch.nn.functional.cross_entropy(top_logits(model, torch.from_numpy(x[b].astype(np.float32)), k),
                                                   torch.from_numpy(np.asarray(y)[b]).long(), reduction="none",
                                                   label_smoothing=0.1)
            loss = (ce * w).sum() / w.sum() + l2 * sum(((p - s) ** 2).sum() for p, s in zip(params, start))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        losses.append(total / per_epoch)
        if log is not None:
            log(f"top-{k} tune: epoch {epoch + 1}/{epochs}, loss {losses[-1]:.4f}")
    for p in model.parameters():
        p.requires_grad_(False)
    return losses
