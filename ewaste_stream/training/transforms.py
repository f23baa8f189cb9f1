"""Photo augmentations of the reference recipe, on RGB uint8 arrays (OpenCV), plus TTA views.

Train: resize to S*256/224 and random-crop S (the 256 -> 224 recipe at any input size),
horizontal flip 0.5, rotation +-15 deg with scale jitter 0.8-1.2, random 90-degree rotations,
colour jitter (brightness 0.2, contrast 0.15, saturation 0.2, hue 0.1), shadows, blur and
Gaussian noise sigma 0.01. Output is uint8 S x S; ``ewaste_stream.model.preprocess`` then does
the one resize + mean/std every backend uses, so train and eval see the same normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PhotoAug:
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.8, 1.2)
    rot90: bool = True
    hflip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.15
    saturation: float = 0.2
    hue: float = 0.1
    noise_sigma: float = 0.01
    shadow_p: float = 0.3
    blur_p: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale range must satisfy 0 < lo <= hi, got {self.scale}")
        for name in ("hflip", "shadow_p", "blur_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1]")


def geometric(img: np.ndarray, rng: np.random.Generator, size: int, aug: PhotoAug) -> np.ndarray:
    """Rotation/scale/flip, then resize to size*256/224 and random-crop ``size``."""
    if aug.rot90:
        img = np.rot90(img, int(rng.integers(4)))
    if rng.random() < aug.hflip:
        img = img[:, ::-1]
    big = max(size, int(round(size * 256 / 224)))
    img = cv2.resize(np.ascontiguousarray(img), (big, big), interpolation=cv2.INTER_LINEAR)
    angle = float(rng.uniform(-aug.rotate_deg, aug.rotate_deg))
    scale = float(rng.uniform(*aug.scale))
    m = cv2.getRotationMatrix2D((big / 2, big / 2), angle, scale)
    img = cv2.warpAffine(img, m, (big, big), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    y, x = (int(v) for v in rng.integers(0, big - size + 1, size=2))
    return img[y:y + size, x:x + size]


def colour(img: np.ndarray, rng: np.random.Generator, aug: PhotoAug) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter (torchvision ColorJitter factors)."""
    f = img.astype(np.float32)
    f *= rng.uniform(1 - aug.brightness, 1 + aug.brightness)
    mean = f.mean()
    f = (f - mean) * rng.uniform(1 - aug.contrast, 1 + aug.contrast) + mean
    grey = f @ np.array([0.299, 0.587, 0.114], np.float32)
    f = grey[..., None] + (f - grey[..., None]) * rng.uniform(1 - aug.saturation, 1 + aug.saturation)
    out = np.clip(f, 0, 255).astype(np.uint8)
    if aug.hue > 0:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
        shift = int(round(rng.uniform(-aug.hue, aug.hue) * 180))
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return out


def shadow(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darken one side of a random straight line (a hand, a neighbour item, a rail)."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    d = (xx - w * rng.uniform(0.2, 0.8)) * np.cos(theta) + (yy - h * rng.uniform(0.2, 0.8)) * np.sin(theta)
    mask = cv2.GaussianBlur((d > 0).astype(np.float32), (0, 0), sigmaX=max(1.0, w * 0.03))
    gain = 1.0 - mask * rng.uniform(0.15, 0.45)
    return np.clip(img.astype(np.float32) * gain[..., None], 0, 255).astype(np.uint8)


def blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Defocus or horizontal motion blur (the belt moves along x)."""
    k = int(rng.integers(1, 4)) * 2 + 1
    if rng.random() < 0.5:
        return cv2.GaussianBlur(img, (k, k), 0)
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0 / k
    return cv2.filter2D(img, -1, kernel)


def noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    n = rng.normal(0.0, sigma * 255.0, img.shape).astype(np.float32)
    return np.clip(img.astype(np.float32) + n, 0, 255).astype(np.uint8)


def augment_photo(img: np.ndarray, rng: np.random.Generator, size: int, aug: PhotoAug = PhotoAug()) -> np.ndarray:
    """One training view of a photo: RGB uint8 in, RGB uint8 ``size`` x ``size`` out."""
    out = colour(geometric(img, rng, size, aug), rng, aug)
    if rng.random() < aug.shadow_p:
        out = shadow(out, rng)
    if rng.random() < aug.blur_p:
        out = blur(out, rng)
    if aug.noise_sigma > 0:
        out = noise(out, rng, aug.noise_sigma)
    return np.ascontiguousarray(out)


def rot90_views(img: np.ndarray) -> list[np.ndarray]:
    """The four 90-degree rotations of a crop (test-time augmentation)."""
    return [np.ascontiguousarray(np.rot90(img, k)) for k in range(4)]
