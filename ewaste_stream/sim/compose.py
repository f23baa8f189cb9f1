"""Compositing of product photos onto a conveyor belt.

Shared by the video renderer (``ewaste_stream.sim.render``) and by training
(``render_belt_crop``), so a training crop goes through exactly the code the camera's frames
go through: cut-out -> sprite (scale, rotation, brightness, shadow, motion blur) -> paste
onto the belt texture -> lighting, vignette, noise -> a detector-like box -> resize.

Images are RGB uint8 here (the video writer converts to BGR at the very end).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from .effects import REF_HEIGHT, Realism, apply_camera, blur_length, motion_blur, noise_pair, vignette_map

REF_SPEED = 36  # belt px/frame of the reference camera (1280x720 at 60 fps)
_WHITE_MIN = 228  # a "near-white" pixel has every channel >= this ...
_WHITE_SPREAD = 24  # ... and max - min channel <= this
_FLAT_MAX = 14  # ... and a local (3x3) grey-level range <= this (edges stop the flood)


def cutout(photo_rgb: np.ndarray, border_white_min: float = 0.55) -> tuple[np.ndarray, np.ndarray]:
    """Remove a white product background: ``(rgb, alpha float32 0..1)``.

    The background is the near-white, flat region connected to the image border. When less
    than ``border_white_min`` of the border is near-white, the photo is a scene and the
    whole tile is kept (alpha = 1). Also keeps the tile when the cut would leave < 4 % of it.
    """
    img = np.ascontiguousarray(photo_rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"cutout: expected an HxWx3 uint8 RGB image, got {img.shape} {img.dtype}")
    h, w = img.shape[:2]
    full = np.ones((h, w), np.float32)
    mn, mx = img.min(axis=2), img.max(axis=2)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    flat = cv2.morphologyEx(grey, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) <= _FLAT_MAX
    white = (mn >= _WHITE_MIN) & ((mx - mn) <= _WHITE_SPREAD)
    border = np.concatenate([white[0], white[-1], white[:, 0], white[:, -1]])
    if border.mean() < border_white_min:
        return img, full
    cand = (white & flat) | (white & (mn >= 245))
    _, labels = cv2.connectedComponents(cand.astype(np.uint8), connectivity=4)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge_labels = edge_labels[edge_labels > 0]
    fg = ~np.isin(labels, edge_labels)
    fg8 = fg.astype(np.uint8)
    fg8 = cv2.morphologyEx(fg8, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    fg8 = cv2.morphologyEx(fg8, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    fg8 = _drop_specks(fg8, min_area=max(12, int(0.004 * h * w)))
    if fg8.mean() < 0.04:
        return img, full
    fg8 = _fill_if_shredded(fg8)
    band = fg8 & ~cv2.erode(fg8, np.ones((5, 5), np.uint8))  # 2 px rim: drop its whitish JPEG halo
    fg8[(band > 0) & (mn >= 195) & ((mx - mn) <= 32)] = 0
    fg8 = cv2.erode(fg8, np.ones((2, 2), np.uint8))
    alpha = cv2.GaussianBlur(fg8.astype(np.float32), (0, 0), 0.8)
    return img, np.clip(alpha, 0.0, 1.0)


def one_object(alpha: np.ndarray) -> np.ndarray:
    """The cut-out's largest part alone, so that one sprite is one item on the belt.

    A photo can show several products (three TVs), a watermark banner, or a white product that
    the background removal cut into pieces; on a belt those are separate things, and a video
    whose ground truth calls them one item counts the pipeline's right answer (one decision
    per part) as duplicates. Alpha of the other parts is set to 0."""
    m = (alpha > 0.5).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 2:
        return alpha
    main = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    rim = cv2.dilate(main, np.ones((5, 5), np.uint8))  # the main part with its soft edge
    return (alpha * rim).astype(np.float32)


def _drop_specks(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Drop components smaller than min_area or than 3 % of the largest (watermarks, dust)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, np.uint8)
    keep[1:] = (areas >= min_area) & (areas >= 0.03 * areas.max())
    return keep[labels]


def _fill_if_shredded(mask: np.ndarray, min_solidity: float = 0.6) -> np.ndarray:
    """A white product on white comes out in fragments: then take the fragments' convex hull."""
    pts = cv2.findNonZero(mask)
    hull = cv2.convexHull(pts)
    if mask.sum() >= min_solidity * cv2.contourArea(hull):
        return mask
    out = np.zeros_like(mask)
    cv2.fillPoly(out, [hull.reshape(-1, 2)], 1)
    return out


def belt_texture(h: int, w: int, rng: np.random.Generator, strength: float = 1.0,
                 periodic: bool = False) -> np.ndarray:
    """A dark rubber belt, RGB uint8 HxW, moving along x: grain, streaks along x, seams across.

    ``periodic=True`` makes the texture wrap around in x (a belt is a loop), so a video can
    scroll one precomputed strip forever.
    """
    if h < 2 or w < 2:
        raise ValueError(f"belt_texture: size must be at least 2x2, got {h}x{w}")
    overlap = min(64, w // 4) if periodic else 0
    ww = w + overlap
    base = rng.uniform(38, 62)
    g = np.full((h, ww), base, np.float32)
    if strength > 0:
        grain = cv2.GaussianBlur(rng.standard_normal((h, ww), dtype=np.float32) * np.float32(7), (0, 0), 0.7)
        coarse = rng.normal(0, 4, (max(2, h // 48), max(2, ww // 48))).astype(np.float32)
        mottle = cv2.resize(coarse, (ww, h), interpolation=cv2.INTER_CUBIC)
        rows = rng.normal(0, 1, (h, max(2, ww // 160))).astype(np.float32)
        streaks = cv2.resize(rows, (ww, h), interpolation=cv2.INTER_LINEAR)
        streaks = cv2.GaussianBlur(streaks, (0, 0), sigmaX=0.1, sigmaY=0.8) * 4.0
        g += strength * (grain + mottle + streaks)
        _scratches(g, rng, strength)
    if overlap:
        ramp = np.linspace(0, 1, overlap, endpoint=False, dtype=np.float32)[None, :]
        g[:, :overlap] = g[:, :overlap] * ramp + g[:, w:w + overlap] * (1 - ramp)
        g = g[:, :w]
    if strength > 0:
        _seams(g, rng, strength)
    tint = rng.uniform(-2.5, 2.5, 3).astype(np.float32)
    rgb = np.clip(g[:, :, None] + tint[None, None, :], 0, 255)
    return np.round(rgb).astype(np.uint8)


def _scratches(g: np.ndarray, rng: np.random.Generator, strength: float) -> None:
    h, w = g.shape
    for _ in range(int(rng.poisson(max(1.0, h * w / 40000)))):
        y, x0 = int(rng.integers(h)), int(rng.integers(w))
        length = int(rng.integers(w // 20 + 2, w // 4 + 3))
        g[y, x0:x0 + length] += strength * rng.uniform(-12, 16)


def _seams(g: np.ndarray, rng: np.random.Generator, strength: float) -> None:
    """Splices across the belt: a dark line with a lighter lip, slightly skewed, ~every 1.3 belt widths."""
    h, w = g.shape
    period = max(8, int(1.3 * h * rng.uniform(0.9, 1.1)))
    start = int(rng.integers(period))
    skew = rng.uniform(-0.08, 0.08)
    yy = np.arange(h)
    for x in range(start, w, period):
        xs = (x + skew * (yy - h / 2)).astype(int)
        for dx, delta in ((0, -14), (1, -18), (2, -10), (3, 8)):
            g[yy, np.clip(xs + dx, 0, w - 1)] += strength * delta


@dataclass(frozen=True, slots=True)
class Sprite:
    """An item ready to paste: ``out = bg * mult / 255 + add`` over its HxW window.

    ``alpha`` is the item's own coverage (no shadow); ``centroid`` is alpha-weighted, in
    sprite pixels, so a sprite pasted at (x0, y0) has its item centroid at (x0 + cx, y0 + cy).
    """

    mult: np.ndarray  # HxWx3 uint8, 255 = background unchanged
    add: np.ndarray  # HxWx3 uint8, premultiplied item colour
    alpha: np.ndarray  # HxW float32 0..1
    centroid: tuple[float, float]

    @property
    def size(self) -> tuple[int, int]:
        return int(self.alpha.shape[1]), int(self.alpha.shape[0])  # (w, h)


@dataclass(frozen=True, slots=True)
class Pose:
    """How an item lies on the belt: rotation (deg), zoom from photo to belt px, brightness, shadow."""

    angle: float
    scale: float
    gain: float = 1.0
    shadow_dx: float = 0.0
    shadow_dy: float = 0.0


def silhouette_extent(alpha: np.ndarray) -> int:
    """Longest side (px) of the item's silhouette bounding box."""
    ys, xs = np.nonzero(alpha > 0.5)
    if len(xs) == 0:
        return max(alpha.shape)
    return int(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))


def sample_pose(alpha: np.ndarray, belt_width_px: float, realism: Realism, rng: np.random.Generator,
                angle: float | None = None, scale: float | None = None) -> Pose:
    """Random rotation, belt scale (silhouette size in [min_size, max_size] of the belt width),
    item brightness (some items darkened to belt level) and a shadow offset."""
    if angle is None:
        angle = float(rng.uniform(-realism.rotation, realism.rotation)) if realism.rotation > 0 else 0.0
    if scale is None:
        frac = rng.uniform(realism.min_size, realism.max_size)
        scale = float(frac * belt_width_px / silhouette_extent(alpha))
    dark = rng.random() < realism.dark_items
    gain = float(rng.uniform(0.3, 0.55) if dark else rng.uniform(0.85, 1.1))
    off = 0.03 * belt_width_px * realism.shadows / 0.45 if realism.shadows > 0 else 0.0
    theta = rng.uniform(0, 2 * np.pi)
    return Pose(angle=float(angle), scale=float(scale), gain=gain,
                shadow_dx=float(off * np.cos(theta)), shadow_dy=float(off * np.sin(theta)))


def make_sprite(rgb: np.ndarray, alpha: np.ndarray, pose: Pose, realism: Realism, blur_px: int) -> Sprite:
    """Scale, rotate, darken, shadow and motion-blur one cut-out item (done once per item)."""
    if pose.scale <= 0:
        raise ValueError(f"make_sprite: scale must be > 0, got {pose.scale}")
    a = alpha.astype(np.float32)
    prem = rgb.astype(np.float32) * a[:, :, None]
    h, w = a.shape
    nw, nh = max(1, round(w * pose.scale)), max(1, round(h * pose.scale))
    interp = cv2.INTER_AREA if pose.scale < 1 else cv2.INTER_LINEAR
    prem, a = cv2.resize(prem, (nw, nh), interpolation=interp), cv2.resize(a, (nw, nh), interpolation=interp)
    shadow_r = abs(pose.shadow_dx) + abs(pose.shadow_dy)
    pad = int(np.ceil(shadow_r + 2 * max(1.0, 0.02 * max(nw, nh)) + blur_px)) + 2
    rot = cv2.getRotationMatrix2D((nw / 2, nh / 2), pose.angle, 1.0)
    c, s = abs(rot[0, 0]), abs(rot[0, 1])
    ow, oh = int(np.ceil(nh * s + nw * c)) + 2 * pad, int(np.ceil(nh * c + nw * s)) + 2 * pad
    rot[0, 2] += ow / 2 - nw / 2
    rot[1, 2] += oh / 2 - nh / 2
    prem = cv2.warpAffine(prem, rot, (ow, oh), flags=cv2.INTER_LINEAR, borderValue=0)
    a = cv2.warpAffine(a, rot, (ow, oh), flags=cv2.INTER_LINEAR, borderValue=0)
    prem *= pose.gain
    shadow = _shadow(a, pose, realism)
    prem, a, shadow = motion_blur(prem, blur_px), motion_blur(a, blur_px), motion_blur(shadow, blur_px)
    mult = (1.0 - a) * (1.0 - realism.shadows * shadow)
    mult8 = cv2.convertScaleAbs(mult, alpha=255.0)  # saturating, rounded
    add8 = cv2.convertScaleAbs(prem)
    mom = cv2.moments(a)
    m = mom["m00"]
    centroid = (mom["m10"] / m, mom["m01"] / m) if m > 1e-6 else (ow / 2, oh / 2)
    return Sprite(mult=cv2.merge([mult8] * 3), add=add8, alpha=a, centroid=centroid)


def _shadow(a: np.ndarray, pose: Pose, realism: Realism) -> np.ndarray:
    if realism.shadows <= 0:
        return np.zeros_like(a)
    h, w = a.shape
    k = 4 if min(h, w) >= 64 else 1  # a soft shadow: offset and blur at 1/4 resolution
    small = cv2.resize(a, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
    m = np.float32([[1, 0, pose.shadow_dx / k], [0, 1, pose.shadow_dy / k]])
    sh = cv2.warpAffine(small, m, (small.shape[1], small.shape[0]), borderValue=0)
    sh = cv2.GaussianBlur(sh, (0, 0), max(0.6, 0.02 * max(h, w) / k))
    return cv2.resize(sh, (w, h), interpolation=cv2.INTER_LINEAR) * (1.0 - a)


def paste_sprite(canvas: np.ndarray, sprite: Sprite, x0: int, y0: int) -> None:
    """Composite a sprite into an RGB uint8 canvas at integer (x0, y0), clipped to the canvas."""
    h, w = canvas.shape[:2]
    sw, sh = sprite.size
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x0 + sw), min(h, y0 + sh)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    roi = canvas[cy0:cy1, cx0:cx1]
    sx, sy = cx0 - x0, cy0 - y0
    m = sprite.mult[sy:sy + cy1 - cy0, sx:sx + cx1 - cx0]
    a = sprite.add[sy:sy + cy1 - cy0, sx:sx + cx1 - cx0]
    cv2.multiply(roi, m, dst=roi, scale=1.0 / 255.0)
    cv2.add(roi, a, dst=roi)


def detector_box(sprite: Sprite, x0: int, y0: int, threshold: float = 0.5) -> tuple[int, int, int, int]:
    """The item's tight box in canvas px (what a blob detector would find), x1/y1 exclusive."""
    ys, xs = np.nonzero(sprite.alpha > threshold)
    if len(xs) == 0:
        w, h = sprite.size
        return x0, y0, x0 + w, y0 + h
    return x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1


def jittered_square(box: tuple[int, int, int, int], rng: np.random.Generator, margin: float = 0.15,
                    jitter: float = 0.06) -> tuple[int, int, int, int]:
    """A square crop around a box with a relative margin and detector-like jitter of centre and size."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin) * float(rng.uniform(1 - jitter, 1 + jitter))
    cx = (x0 + x1) / 2 + float(rng.normal(0, jitter / 2)) * side
    cy = (y0 + y1) / 2 + float(rng.normal(0, jitter / 2)) * side
    half = max(2.0, side / 2)
    return int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half))


def render_belt_crop(photo_rgb: np.ndarray, rng: np.random.Generator, out_size: int = 224,
                     angle: float | None = None, scale: float | None = None,
                     realism: Realism | None = None) -> np.ndarray:
    """One item as the camera + detector would crop it from a belt frame (RGB uint8, out_size^2).

    Same code path as the video: cut-out, ``sample_pose``/``make_sprite`` at the scale of a
    720-px-tall belt view (``scale`` = belt px per photo px at that height, as in a 720p
    video's ground truth), belt texture with motion blur, lighting drift, the vignette of a
    random spot of a 1280x720 frame and sensor noise, then a jittered square box with margin
    around the silhouette (like a detector's box), a codec-like JPEG pass and a resize.
    Belt, vignette and noise come from small fixed-seed banks, so a crop costs a few ms and
    depends only on ``rng``.
    """
    realism = realism or Realism()
    rgb, alpha = cutout(photo_rgb) if realism.cutout else (photo_rgb, np.ones(photo_rgb.shape[:2], np.float32))
    pose = sample_pose(alpha, REF_HEIGHT, realism, rng, angle=angle, scale=scale)
    blur_px = blur_length(realism, REF_SPEED * rng.uniform(0.8, 1.2))
    sprite = make_sprite(rgb, alpha, pose, realism, blur_px)
    sw, sh = sprite.size
    pad = int(0.3 * max(sw, sh)) + 8
    # the canvas must fit every bank it takes a window of (belt and noise 720x1440, vignette
    # 720x1280); a small item on a wide white margin makes a sprite larger than that
    ph, pw = min(sh + 2 * pad, REF_HEIGHT), min(sw + 2 * pad, REF_HEIGHT * 16 // 9)
    canvas = motion_blur(_bank_window(_belt_bank(realism.texture), ph, pw, rng), blur_px)
    ox, oy = (pw - sw) // 2, (ph - sh) // 2
    paste_sprite(canvas, sprite, ox, oy)
    gain = 1.0 + realism.lighting * rng.uniform(-1.2, 1.2)
    vig = None
    if realism.vignette > 0 or realism.lighting > 0:  # vignette of a random spot x this camera's colour cast
        cast = 1.0 - 0.5 * realism.lighting * rng.uniform(0, 1, 3)
        win = _bank_window([_vignette(realism.vignette)], ph, pw, rng) if realism.vignette > 0 else 255
        vig = np.round(np.broadcast_to(win, (ph, pw, 3)) * cast.astype(np.float32)).astype(np.uint8)
    noise = None
    if realism.noise > 0:
        pos, neg = _noise_bank(realism.noise)
        y, x = int(rng.integers(pos.shape[0] - ph + 1)), int(rng.integers(pos.shape[1] - pw + 1))
        noise = pos[y:y + ph, x:x + pw], neg[y:y + ph, x:x + pw]
    apply_camera(canvas, gain, vig, noise)
    x0, y0, x1, y1 = jittered_square(detector_box(sprite, ox, oy), rng)
    crop = _crop_padded(canvas, x0, y0, x1, y1)
    if rng.random() < 0.7:  # mp4 frames carry block artefacts
        bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(55, 92))])
        crop = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) if ok else crop
    interp = cv2.INTER_AREA if crop.shape[0] > out_size else cv2.INTER_LINEAR
    return cv2.resize(crop, (out_size, out_size), interpolation=interp)


@functools.lru_cache(maxsize=4)
def _belt_bank(strength: float) -> tuple[np.ndarray, ...]:
    """A few fixed-seed belts (720 x 1440) that crops take random windows of."""
    return tuple(belt_texture(REF_HEIGHT, 2 * REF_HEIGHT, np.random.default_rng(9000 + i), strength)
                 for i in range(4))


@functools.lru_cache(maxsize=4)
def _vignette(strength: float) -> np.ndarray:
    return vignette_map(REF_HEIGHT, REF_HEIGHT * 16 // 9, strength, np.random.default_rng(9100))


@functools.lru_cache(maxsize=4)
def _noise_bank(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    return noise_pair((REF_HEIGHT, 2 * REF_HEIGHT), sigma, np.random.default_rng(9200))


def _bank_window(bank: tuple[np.ndarray, ...] | list[np.ndarray], h: int, w: int,
                 rng: np.random.Generator) -> np.ndarray:
    """A random h x w window (copy) of a random image of the bank, randomly mirrored."""
    img = bank[int(rng.integers(len(bank)))]
    y, x = int(rng.integers(img.shape[0] - h + 1)), int(rng.integers(img.shape[1] - w + 1))
    win = img[y:y + h, x:x + w]
    if rng.random() < 0.5:
        win = win[::-1]
    return np.ascontiguousarray(win)


def _crop_padded(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Crop with edge replication where the box leaves the image."""
    h, w = img.shape[:2]
    px0, py0, px1, py1 = max(0, -x0), max(0, -y0), max(0, x1 - w), max(0, y1 - h)
    if px0 or py0 or px1 or py1:
        img = cv2.copyMakeBorder(img, py0, py1, px0, px1, cv2.BORDER_REFLECT)
        x0, x1, y0, y1 = x0 + px0, x1 + px0, y0 + py0, y1 + py0
    return np.ascontiguousarray(img[y0:y1, x0:x1])
