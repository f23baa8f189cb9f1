"""Camera and belt effects shared by the video renderer and ``render_belt_crop``.

Everything here works on uint8 images with OpenCV primitives (LUTs, saturating adds,
box blurs) so a 1280x720 frame costs a few milliseconds. ``Realism`` holds the knobs; every
knob is on by default at a moderate level and 0 (or False) switches it off.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

REF_HEIGHT = 720  # frame height the default belt scale refers to (px of belt width)


@dataclass(frozen=True, slots=True)
class Realism:
    """Realism knobs of the belt simulator (0/False switches one off)."""

    texture: float = 1.0  # belt texture strength (grain, streaks, seams); 0 = flat belt
    lighting: float = 0.12  # amplitude of the slow lighting drift (relative gain)
    vignette: float = 0.2  # brightness fall-off towards the image corners
    noise: float = 4.0  # sensor noise sigma (grey levels)
    motion_blur: float = 0.2  # exposure as a fraction of a frame: blur length = this * belt px/frame
    shadows: float = 0.45  # shadow darkness under items
    rotation: float = 180.0  # items are rotated uniformly in +-this many degrees
    min_size: float = 0.12  # item size (longest side of its silhouette) as a fraction of belt width
    max_size: float = 0.27
    dark_items: float = 0.15  # fraction of items darkened to near-belt brightness
    cutout: bool = True  # cut white product backgrounds out (scene photos keep their tile)
    perspective: float = 0.04  # homography strength of cameras 1.. (camera 0 is top-down)

    def __post_init__(self) -> None:
        for name in ("texture", "lighting", "vignette", "noise", "motion_blur", "shadows", "rotation",
                     "dark_items", "perspective"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"Realism.{name} must be a finite number >= 0, got {v!r}")
        if self.lighting >= 0.6 or self.vignette >= 0.9 or self.shadows > 1 or self.dark_items > 1:
            raise ValueError("Realism: lighting < 0.6, vignette < 0.9, shadows <= 1, dark_items <= 1")
        if not (0.02 <= self.min_size <= self.max_size <= 0.9):
            raise ValueError(f"Realism: need 0.02 <= min_size <= max_size <= 0.9, got "
                             f"{self.min_size}, {self.max_size}")
        if self.perspective > 0.2:
            raise ValueError(f"Realism.perspective must be <= 0.2 (a mild homography), got {self.perspective}")

    def to_dict(self) -> dict:
        return asdict(self)


def blur_length(realism: Realism, speed_px_per_frame: float) -> int:
    """Length (px) of the horizontal motion-blur kernel for a belt moving at this speed."""
    return max(1, int(round(realism.motion_blur * speed_px_per_frame)))


def motion_blur(img: np.ndarray, length: int) -> np.ndarray:
    """Box blur along the belt (x); a no-op for length <= 1."""
    if length <= 1:
        return img
    return cv2.blur(img, (int(length), 1), borderType=cv2.BORDER_REFLECT)


def vignette_map(h: int, w: int, strength: float, rng: np.random.Generator,
                 tint: float = 0.0) -> np.ndarray | None:
    """uint8 HxWx3 brightness map (255 = unchanged): an off-centre fall-off times a slight
    colour cast (up to ``tint`` per channel) of this camera; None when both are off."""
    if strength <= 0 and tint <= 0:
        return None
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - cx) / (0.75 * w)) ** 2 + ((yy - cy) / (0.75 * h)) ** 2
    m = 1.0 - strength * np.clip(r2, 0, 1.5) / 1.5
    cast = 1.0 - tint * rng.uniform(0, 1, 3).astype(np.float32)
    return np.round(255 * m[:, :, None] * cast[None, None, :]).astype(np.uint8)


def lighting_gain(t: float, phase: np.ndarray, amplitude: float) -> float:
    """Slow, smooth global gain at stream time ``t`` (two sinusoids, periods 7.3 s and 23 s)."""
    if amplitude <= 0:
        return 1.0
    return 1.0 + amplitude * (0.6 * math.sin(2 * math.pi * t / 7.3 + phase[0])
                              + 0.4 * math.sin(2 * math.pi * t / 23.0 + phase[1]))


def apply_camera(img: np.ndarray, gain: float, vignette: np.ndarray | None,
                 noise: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Lighting gain, vignette/colour cast and sensor noise, in place (uint8, saturating)."""
    if vignette is not None:
        cv2.multiply(img, vignette, dst=img, scale=gain / 255.0)
    elif gain != 1.0:
        cv2.convertScaleAbs(img, dst=img, alpha=gain)
    if noise is not None:
        pos, neg = noise
        cv2.add(img, pos, dst=img)
        cv2.subtract(img, neg, dst=img)
    return img


def noise_pair(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Signed Gaussian noise split into (positive, negative) uint8 parts for saturating add/subtract."""
    n = np.round(rng.standard_normal((*shape, 3), dtype=np.float32) * np.float32(sigma))
    pos = np.clip(n, 0, 255).astype(np.uint8)
    neg = np.clip(-n, 0, 255).astype(np.uint8)
    return pos, neg


class NoiseBank:
    """A few precomputed noise tiles a bit larger than the frame; each frame takes a random window."""

    def __init__(self, h: int, w: int, sigma: float, rng: np.random.Generator, tiles: int = 3, pad: int = 32):
        self.h, self.w, self.pad = h, w, pad
        self.tiles = [noise_pair((h + pad, w + pad), sigma, rng) for _ in range(tiles)] if sigma > 0 else []

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.tiles:
            return None
        pos, neg = self.tiles[int(rng.integers(len(self.tiles)))]
        oy, ox = int(rng.integers(self.pad + 1)), int(rng.integers(self.pad + 1))
        return pos[oy:oy + self.h, ox:ox + self.w], neg[oy:oy + self.h, ox:ox + self.w]
