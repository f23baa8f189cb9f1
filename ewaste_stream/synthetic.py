"""Small synthetic belt footage with exact ground truth, for pipeline tests and benchmarks.

Not the simulator (``ewaste_stream.sim`` composites real photos): flat-coloured, rotated
rectangles on a dark, textured, scrolling belt (grain, streaks along the belt, skewed dark
seams across it), drawn fast with OpenCV so tests can make hundreds of frames in a second.
Items can be light, dark (darker than the belt, belt-coloured), smooth (flat, at the belt's
own mean brightness: only the belt's missing texture gives it away), keys (rows of keys and
gaps averaging the belt's brightness: only their busy texture gives them away) or carry a dark band; an
optional shadow falls beside them. ``COLOURS[i]`` is the colour of class ``i`` so a stub
classifier can read the class back from a crop (:class:`ColourClassifier`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np

BELT_LEVEL = 52  # the belt's mean grey level
KEY_STEP = 21  # grey levels of a "keys" item's keys over the belt (its gaps are 4/3 of that under)
COLOURS = ((40, 200, 230), (230, 120, 40), (60, 220, 60), (200, 60, 200), (230, 230, 230), (40, 60, 220))  # BGR


@dataclass(frozen=True)
class SynthItem:
    """An item lying on the belt: its box centre at frame 0 in belt px, size, angle, class."""

    item: int
    cx: float
    cy: float
    w: float
    h: float
    angle: float = 0.0
    cls: int = 0
    kind: str = "light"  # light | dark | smooth | keys | banded | rimmed
    shadow: tuple[float, float] | None = None  # shadow offset (dx, dy) px, or none


@dataclass
class SynthBelt:
    """Renders frame ``k`` of a belt moving ``speed(k)`` px/frame to the right."""

    width: int = 320
    height: int = 180
    seed: int = 0
    texture: bool = True
    speed: Callable[[int], float] = field(default=lambda k: 8.0)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        loop = 4 * self.width
        g = np.full((self.height, loop), float(BELT_LEVEL), np.float32)
        if self.texture:
            g += cv2.GaussianBlur(rng.normal(0, 6, g.shape).astype(np.float32), (0, 0), 0.8)
            rows = cv2.resize(rng.normal(0, 1, (self.height, loop // 64)).astype(np.float32), (loop, self.height))
            g += 3.0 * rows
            for x in range(int(rng.integers(40)), loop, max(16, int(1.3 * self.height))):
                xs = (x + 0.06 * (np.arange(self.height) - self.height / 2)).astype(int) % loop
                for dx, delta in ((0, -16), (1, -12), (2, 8)):
                    g[np.arange(self.height), (xs + dx) % loop] += delta
        self.strip = np.clip(g, 0, 255).astype(np.uint8)
        self._offsets = [0.0]

    def offset(self, k: int) -> float:
        """Belt displacement (px) between frame 0 and frame k."""
        while len(self._offsets) <= k:
            self._offsets.append(self._offsets[-1] + float(self.speed(len(self._offsets))))
        return self._offsets[k]

    def frame(self, k: int, items: Sequence[SynthItem]) -> tuple[np.ndarray, list[dict]]:
        """(BGR image, ground truth rows {item, cls, bbox, centroid} of the items in view)."""
        off = self.offset(k)
        cols = (np.arange(self.width) - int(round(off))) % self.strip.shape[1]
        img = cv2.cvtColor(self.strip[:, cols], cv2.COLOR_GRAY2BGR)
        gts = []
        for it in items:
            cx = it.cx + off
            if cx + max(it.w, it.h) < 0 or cx - max(it.w, it.h) > self.width:
                continue
            poly = cv2.boxPoints(((cx, it.cy), (it.w, it.h), it.angle))
            if it.shadow is not None:
                sh = np.zeros(img.shape[:2], np.uint8)
                cv2.fillPoly(sh, [np.round(poly + np.float32(it.shadow)).astype(np.int32)], 1)
                img[sh > 0] = (img[sh > 0] * 0.6).astype(np.uint8)
            self._draw(img, it, poly)
            x0, y0 = np.floor(poly.min(axis=0))
            x1, y1 = np.ceil(poly.max(axis=0))
            box = (max(0.0, float(x0)), max(0.0, float(y0)), min(float(self.width), float(x1)), min(float(self.height), float(y1)))
            if box[2] > box[0] and box[3] > box[1]:
                gts.append({"item": it.item, "cls": it.cls, "bbox": box, "centroid": (cx, it.cy)})
        return img, gts

    def _draw(self, img: np.ndarray, it: SynthItem, poly: np.ndarray) -> None:
        pts = np.round(poly).astype(np.int32)
        if it.kind == "dark":
            m = np.zeros(img.shape[:2], np.uint8)
            cv2.fillPoly(m, [pts], 1)
            img[m > 0] = (img[m > 0] * 0.35).astype(np.uint8)  # the belt, much darker
            return
        if it.kind == "smooth":
            cv2.fillPoly(img, [pts], (BELT_LEVEL,) * 3)
            return
        if it.kind == "keys":  # rows 4 px tall KEY_STEP above the belt, gaps 3 px 4/3 of that below
            m = np.zeros(img.shape[:2], np.uint8)
            cv2.fillPoly(m, [pts], 1)
            rows = np.where(np.arange(img.shape[0]) % 7 < 4, BELT_LEVEL + KEY_STEP, BELT_LEVEL - KEY_STEP * 4 // 3)
            img[m > 0] = rows[np.nonzero(m)[0], None]  # each item pixel takes its row's level
            return
        if it.kind == "rimmed":  # a body that looks like the belt, a dim rim 4 px wide, two small bright labels
            m = np.zeros(img.shape[:2], np.uint8)
            cv2.polylines(m, [pts], True, 1, thickness=4)
            img[m > 0] = (img[m > 0] * 0.6).astype(np.uint8)  # as dim as a shadow, and as narrow as one
            c, along = poly.mean(axis=0), np.float32([np.cos(np.radians(it.angle)), np.sin(np.radians(it.angle))])
            for side in (-0.3, 0.3):
                label = cv2.boxPoints(((float(c[0] + side * it.w * along[0]), float(c[1] + side * it.w * along[1])),
                                       (28.0, 18.0), it.angle))
                cv2.fillPoly(img, [np.round(label).astype(np.int32)], COLOURS[it.cls % len(COLOURS)])
            return
        cv2.fillPoly(img, [pts], COLOURS[it.cls % len(COLOURS)])
        if it.kind == "banded":
            c = poly.mean(axis=0)
            band = cv2.boxPoints(((float(c[0]), float(c[1])), (it.w * 0.2, it.h), it.angle))
            cv2.fillPoly(img, [np.round(band).astype(np.int32)], (12, 12, 12))


class ColourClassifier:
    """Stub classifier: the class whose ``COLOURS`` entry is nearest the crop's centre colour."""

    def __init__(self, class_names: Sequence[str] | None = None, confidence: float = 0.9) -> None:
        n = len(COLOURS)
        self._names = tuple(class_names or (f"class{i}" for i in range(n)))
        self.confidence = float(confidence)
        self.calls = 0

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def name(self) -> str:
        return "colour-stub"

    @property
    def sha256(self) -> str:
        return "c" * 64

    def predict(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        self.calls += 1
        n = len(self._names)
        out = np.full((len(crops), n), (1.0 - self.confidence) / max(1, n - 1), np.float32)
        pal = np.array([c[::-1] for c in COLOURS[:n]], np.float32)  # RGB
        for i, crop in enumerate(crops):
            h, w = crop.shape[:2]
            centre = crop[h // 3: max(h // 3 + 1, 2 * h // 3), w // 3: max(w // 3 + 1, 2 * w // 3)].reshape(-1, 3)
            d = ((centre[:, None].astype(np.float32) - pal[None]) ** 2).sum(-1)  # [pixels, classes]
            cls = int(np.bincount(d.argmin(axis=1), minlength=n).argmax())
            out[i, cls] = self.confidence
        return out
