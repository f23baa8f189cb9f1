"""Training samples (plain photos + belt crops) and the evaluation sets (photos, belt crops).

Belt crops come from the simulator's compositing (``ewaste_stream.sim.compose.render_belt_crop``),
the same code that renders the belt videos, so a training or eval crop looks like what the camera
and detector give the classifier. Every random draw uses a generator seeded by
``(seed, epoch, index)``: samples do not depend on worker count, and a resumed run sees the
same data as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from loguru import logger

from .data import Sample, Split, read_rgb
from .transforms import PhotoAug, augment_photo, rot90_views

EVAL_CROP_SIZE = 224  # belt eval crops are rendered at a detector-crop size, then preprocessed


def _renderer_digest() -> str:
    """Hash of the simulator's compositing source: a cache is stale when the renderer changes."""
    from ..sim import compose, effects

    h = hashlib.sha256()
    for mod in (compose, effects):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:16]


def _render_rows(args: tuple) -> np.ndarray:
    from ..sim.compose import render_belt_crop

    paths, first, per_photo, seed, out_size = args
    out = np.empty((len(paths), per_photo, out_size, out_size, 3), np.uint8)
    for j, p in enumerate(paths):
        img = read_rgb(p)
        for k in range(per_photo):
            out[j, k] = render_belt_crop(img, np.random.default_rng([seed, first + j, k]), out_size=out_size)
    return out


def render_crops(paths: Sequence[str], per_photo: int, seed: int, out_size: int,
                 cache_dir: str | Path | None = None, processes: int = 2) -> np.ndarray:
    """``per_photo`` belt crops of every photo, uint8 [N, K, S, S, 3], deterministic in
    (seed, photo index, k). Cached as .npy under ``cache_dir`` (memory-mapped on reuse), keyed by
    the photos, the arguments and the renderer's source, so runs and pilots share one render."""
    key = hashlib.sha256(json.dumps([list(map(str, paths)), per_photo, seed, out_size, _renderer_digest()])
                         .encode()).hexdigest()[:20]
    cached = Path(cache_dir) / f"belt_{out_size}px_{per_photo}x{len(paths)}_{key}.npy" if cache_dir else None
    if cached is not None and cached.is_file():
        logger.info("belt crops: reusing {}", cached)
        return np.load(cached, mmap_mode="r")
    step = max(1, -(-len(paths) // (8 * max(1, processes))))
    jobs = [(list(paths[i:i + step]), i, per_photo, seed, out_size) for i in range(0, len(paths), step)]
    t = time.perf_counter()
    if processes > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(processes) as pool:
            parts = pool.map(_render_rows, jobs)
    else:
        parts = [_render_rows(j) for j in jobs]
    arr = np.concatenate(parts) if parts else np.zeros((0, per_photo, out_size, out_size, 3), np.uint8)
    logger.info("belt crops: rendered {} in {:.0f} s", len(paths) * per_photo, time.perf_counter() - t)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.stem + ".tmp.npy")
        np.save(tmp, arr)
        os.replace(tmp, cached)
    return arr


class TrainSet:
    """Map-style dataset (torch DataLoader compatible): ``(float32 [3,S,S] tensor, label)``.

    With probability ``belt_mix`` a sample is a belt crop rendered from the train photo (random
    rotation, scale, belt, shadow, blur, noise, lighting, box jitter), else the photo under the
    reference photo augmentations. With a ``bank`` (uint8 [N, K, S, S, 3] from
    :func:`render_crops`) belt crops are drawn from K pre-rendered ones per photo and flipped
    (horizontal/vertical: belt streaks stay along the belt), which saves the renderer's CPU
    time every epoch; without one they are rendered on the fly in the loader workers.
    """

    def __init__(self, samples: Sequence[Sample], info, belt_mix: float, seed: int,
                 aug: PhotoAug = PhotoAug(), bank: np.ndarray | None = None) -> None:
        if not 0 <= belt_mix <= 1:
            raise ValueError(f"belt_mix must lie in [0, 1], got {belt_mix}")
        if bank is not None and len(bank) != len(samples):
            raise ValueError(f"belt bank holds {len(bank)} photos but there are {len(samples)} samples")
        self.samples, self.info, self.belt_mix, self.seed, self.aug = list(samples), info, belt_mix, seed, aug
        self.bank = bank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def view(self, index: int) -> np.ndarray:
        """The uint8 RGB training view of sample ``index`` in the current epoch."""
        from ..sim.compose import render_belt_crop

        s = self.samples[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        size = self.info.input_size
        if rng.random() < self.belt_mix:
            if self.bank is not None:
                crop = np.asarray(self.bank[index, int(rng.integers(self.bank.shape[1]))])
                crop = crop[::-1] if rng.random() < 0.5 else crop
            else:
                crop = render_belt_crop(read_rgb(s.path), rng, out_size=size)
            return np.ascontiguousarray(crop[:, ::-1]) if rng.random() < 0.5 else np.ascontiguousarray(crop)
        return augment_photo(read_rgb(s.path), rng, size, self.aug)

    def __getitem__(self, index: int):
        import torch

        from ..model import preprocess

        x = preprocess([self.view(index)], self.info)[0]
        return torch.from_numpy(x), self.samples[index].label


@dataclass(frozen=True)
class EvalSet:
    """Crops to classify, with labels, the image each came from (for leak filtering) and ids."""

    name: str
    crops: list = field(repr=False)
    labels: np.ndarray = field(repr=False)
    sources: tuple[str, ...] = field(repr=False)
    ids: tuple[str, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not len(self.crops) == len(self.labels) == len(self.sources) == len(self.ids):
            raise ValueError(f"eval set {self.name}: crops, labels, sources and ids differ in length")

    def __len__(self) -> int:
        return len(self.crops)

    def mask_without(self, leaked: set[str]) -> np.ndarray:
        return np.array([s not in leaked for s in self.sources], dtype=bool)


def spread(samples: Sequence[Sample], limit: int | None) -> Sequence[Sample]:
    """At most ``limit`` samples, evenly spaced (samples are sorted by class: all classes stay in)."""
    if not limit or limit >= len(samples):
        return samples
    return samples[::-(-len(samples) // limit)][:limit]


def photo_set(split: Split, limit: int | None = None) -> EvalSet:
    samples = spread(split.samples, limit)
    paths = tuple(str(s.path) for s in samples)
    return EvalSet("photo", [read_rgb(p) for p in paths], np.array([s.label for s in samples]), paths, paths)


def belt_set(split: Split, per_photo: int, seed: int, limit: int | None = None,
             out_size: int = EVAL_CROP_SIZE, cache_dir: str | Path | None = None) -> EvalSet:
    """``per_photo`` belt crops of every photo, deterministic in (seed, photo index, k)."""
    samples = spread(split.samples, limit)
    arr = render_crops([str(s.path) for s in samples], per_photo, seed, out_size, cache_dir)
    crops = [arr[i, k] for i in range(len(samples)) for k in range(per_photo)]
    labels = np.repeat([s.label for s in samples], per_photo).astype(np.int64)
    sources = tuple(str(s.path) for s in samples for _ in range(per_photo))
    ids = tuple(f"{s.path}#belt{k}" for s in samples for k in range(per_photo))
    return EvalSet("belt", crops, labels, sources, ids)


def predict_probs(predict: Callable[[list], np.ndarray], crops: Sequence[np.ndarray], batch_size: int = 64,
                  tta: bool = False) -> np.ndarray:
    """Probabilities [N, C] from ``predict`` (a Classifier's, or a torch wrapper's). With
    ``tta`` the four 90-degree rotations of every crop are averaged (as multi-view voting does)."""
    out = []
    for i in range(0, len(crops), batch_size):
        chunk = list(crops[i:i + batch_size])
        if tta:
            views = [v for c in chunk for v in rot90_views(c)]
            p = np.asarray(predict(views), dtype=np.float64)
            out.append(p.reshape(len(chunk), 4, -1).mean(axis=1))
        else:
            out.append(np.asarray(predict(chunk), dtype=np.float64))
    return np.concatenate(out) if out else np.zeros((0, 0))
