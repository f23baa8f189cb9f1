"""Leak detection: eval images that are exact (sha256) or near (dHash) copies of training images.

dHash as the dataset README defines it: grayscale (Pillow ``L``), resize to 9x8 with LANCZOS,
for each row top to bottom and each column left to right emit 1 when a pixel is brighter than
its right-hand neighbour; the first bit is the most significant. Near duplicate: Hamming
distance <= 3 (``DEFAULT_MAX_DISTANCE``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

DEFAULT_MAX_DISTANCE = 3


def dhash(path_or_image) -> int:
    """64-bit difference hash of an image file path or a PIL image."""
    from PIL import Image

    im = Image.open(path_or_image) if isinstance(path_or_image, (str, Path)) else path_or_image
    small = np.asarray(im.convert("L").resize((9, 8), Image.LANCZOS), dtype=np.int16)
    bits = (small[:, :-1] > small[:, 1:]).ravel()
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@dataclass(frozen=True)
class Leak:
    """One eval image and its closest training image."""

    eval_path: Path
    train_path: Path
    distance: int
    exact: bool

    def to_dict(self) -> dict:
        return {"eval": str(self.eval_path), "train": str(self.train_path),
                "dhash_hamming": self.distance, "byte_identical": self.exact}


@dataclass(frozen=True)
class HashIndex:
    paths: tuple[Path, ...]
    sha: tuple[str, ...]
    dhashes: np.ndarray  # uint64 [N]

    @classmethod
    def build(cls, paths: Iterable[str | Path]) -> "HashIndex":
        ps = tuple(Path(p) for p in paths)
        return cls(ps, tuple(sha256_file(p) for p in ps),
                   np.array([dhash(p) for p in ps], dtype=np.uint64))


def _popcount64(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def find_leaks(eval_paths: Iterable[str | Path], train_paths: Iterable[str | Path],
               max_distance: int = DEFAULT_MAX_DISTANCE) -> list[Leak]:
    """Every eval image with a byte-identical or dHash-near (<= ``max_distance``) training
    image, paired with its closest one (exact copies first)."""
    train = HashIndex.build(train_paths)
    if not train.paths:
        return []
    by_sha = {s: p for s, p in zip(train.sha, train.paths)}
    leaks = []
    for path in (Path(p) for p in eval_paths):
        sha = sha256_file(path)
        if sha in by_sha:
            leaks.append(Leak(path, by_sha[sha], 0, True))
            continue
        dist = _popcount64(train.dhashes ^ np.uint64(dhash(path)))
        j = int(np.argmin(dist))
        if int(dist[j]) <= max_distance:
            leaks.append(Leak(path, train.paths[j], int(dist[j]), False))
    return leaks
