"""Classify image files: the library behind ``ewaste-stream predict``.

Files that cannot be read become results with an ``error`` (one per file) so that one bad
file never stops the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .base import Classifier

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Prediction:
    """One image's result: label/confidence/top-k, or ``error`` when it could not be read."""

    path: str
    label: str | None = None
    confidence: float | None = None
    top: tuple[tuple[str, float], ...] = ()
    error: str | None = None

    def __post_init__(self) -> None:
        if (self.error is None) == (self.label is None):
            raise ValueError("a Prediction has either a label or an error")

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "label": self.label, "confidence": round(self.confidence, 6),
                "top": [[lab, round(p, 6)] for lab, p in self.top]}


def iter_image_paths(paths: Iterable[str | Path]) -> Iterator[tuple[Path, str | None]]:
    """Files as given; folders searched recursively for image files (sorted). Yields
    ``(path, error)``; error is set for missing paths and folders without images."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
            if not found:
                yield p, "no image files in this folder"
            for f in found:
                yield f, None
        elif p.exists():
            yield p, None
        else:
            yield p, "no such file or folder"


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8; ``ValueError`` with the reason when it cannot."""
    import cv2

    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ValueError(f"cannot read file ({exc.strerror or exc})") from None
    if buf.size == 0:
        raise ValueError("empty file")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("not a decodable image (corrupt, truncated or not an image format)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def top_k(probs: np.ndarray, class_names: tuple[str, ...], k: int) -> tuple[tuple[str, float], ...]:
    order = np.argsort(-probs, kind="stable")[: max(1, k)]
    return tuple((class_names[i], float(probs[i])) for i in order)


def predict_files(classifier: "Classifier", paths: Iterable[str | Path], batch: int = 16,
                  top: int = 3) -> Iterator[Prediction]:
    """Classify every image under ``paths`` in batches; results come in input order."""
    pending: list[tuple[Path, np.ndarray | None, str | None]] = []
    for path, error in iter_image_paths(paths):
        image = None
        if error is None:
            try:
                image = read_rgb(path)
            except ValueError as exc:
                error = str(exc)
        pending.append((path, image, error))
        if sum(img is not None for _, img, _ in pending) >= batch:
            yield from _flush(classifier, pending, top)
            pending = []
    yield from _flush(classifier, pending, top)


def _flush(classifier: "Classifier", pending: list[tuple[Path, np.ndarray | None, str | None]],
           top: int) -> Iterator[Prediction]:
    images = [img for _, img, _ in pending if img is not None]
    probs = classifier.predict(images) if images else np.zeros((0, len(classifier.class_names)), np.float32)
    rows = iter(probs)
    for path, image, error in pending:
        if image is None:
            yield Prediction(str(path), error=error or "unreadable")
            continue
        t = top_k(next(rows), classifier.class_names, top)
        yield Prediction(str(path), label=t[0][0], confidence=t[0][1], top=t)
