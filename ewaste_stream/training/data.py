"""Dataset scanning: ``ROOT/{train,val[,test]}/<Class>/*.jpg`` and image loading."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import CLASS_NAMES

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


class DatasetError(ValueError):
    """A dataset folder is missing or malformed; the message says what to fix."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int

    def __post_init__(self) -> None:
        if self.label < 0:
            raise ValueError(f"label must be >= 0, got {self.label} for {self.path}")


@dataclass(frozen=True)
class Split:
    """One split folder: samples in a stable order plus the class names they index."""

    root: Path
    class_names: tuple[str, ...]
    samples: tuple[Sample, ...]

    def __len__(self) -> int:
        return len(self.samples)

    def counts(self) -> dict[str, int]:
        out = {c: 0 for c in self.class_names}
        for s in self.samples:
            out[self.class_names[s.label]] += 1
        return out

    def subset(self, keep: set[Path]) -> "Split":
        return Split(self.root, self.class_names, tuple(s for s in self.samples if s.path in keep))

    def describe(self) -> dict:
        return {"path": str(self.root), "images": len(self), "per_class": self.counts()}


def class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_split(split_dir: str | Path, class_names: tuple[str, ...] | None = None) -> Split:
    """Scan ``split_dir/<Class>/*``. With ``class_names`` given, every class folder must be one
    of them (a class may be absent: a small eval folder); without, the project's ten classes (in
    their canonical order) when the folders are exactly those, else the sorted folder names."""
    root = Path(split_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; expected {root}/<Class>/*.jpg")
    folders = class_folders(root)
    if not folders:
        raise DatasetError(f"{root}: no class folders; expected {root}/<Class>/*.jpg")
    if class_names is None:
        class_names = CLASS_NAMES if set(folders) == set(CLASS_NAMES) else tuple(folders)
    unknown = [f for f in folders if f not in class_names]
    if unknown:
        raise DatasetError(f"{root}: class folders {unknown} are not among the model's classes "
                           f"{list(class_names)}; rename or remove them")
    samples = []
    for label, name in enumerate(class_names):
        d = root / name
        if d.is_dir():
            files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            samples.extend(Sample(p, label) for p in files)
    if not samples:
        raise DatasetError(f"{root}: no images (*.jpg/*.png) in its class folders")
    return Split(root, tuple(class_names), tuple(samples))


def scan_root(root: str | Path, splits: tuple[str, ...] = ("train", "val")) -> dict[str, Split]:
    """Scan ``root/<split>`` for each required split; classes come from the train split."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"--data {root}: not a folder; expected {root}/train/<Class>/*.jpg")
    out: dict[str, Split] = {}
    for name in splits:
        if not (root / name).is_dir():
            raise DatasetError(f"--data {root}: missing the '{name}' folder ({root}/{name}/<Class>/*.jpg)")
        first = out.get(splits[0])
        out[name] = scan_split(root / name, first.class_names if first else None)
    return out


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 H x W x 3 (Pillow: decodes like the dataset README)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read image ({exc}); remove or replace the file") from exc
