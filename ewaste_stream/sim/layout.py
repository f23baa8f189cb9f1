"""Where items lie on the belt: Poisson arrivals, lanes, no overlaps.

Belt coordinates are camera 0's pixels at frame 0: an item whose sprite's top-left is at
``(x0, y0)`` appears in frame ``f`` at ``(x0 + speed * f, y0)`` (the belt moves left to
right by an integer number of px per frame, so every paste is an integer-pixel copy).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .compose import Pose, Sprite, cutout, make_sprite, one_object, sample_pose
from .effects import Realism, blur_length


@dataclass(frozen=True, slots=True)
class Photo:
    """A product photo with its cut-out, ready to become sprites."""

    label: str
    file: str  # relative to the images folder, e.g. "Mouse/mouse_12.jpg"
    rgb: np.ndarray = field(repr=False, compare=False)
    alpha: np.ndarray = field(repr=False, compare=False)
    is_cutout: bool = False  # False: the whole tile is kept (scene photo or cut-out off)


@dataclass(frozen=True, slots=True)
class Placement:
    """One item on the belt."""

    item: int  # 1, 2, 3 ... in order of arrival
    photo: Photo = field(repr=False, compare=False)
    pose: Pose
    sprite: Sprite = field(repr=False, compare=False)
    x0: int  # sprite top-left in belt coordinates (camera 0 px at frame 0)
    y0: int
    box: tuple[int, int, int, int]  # silhouette box (alpha > 0.5) in sprite px, x1/y1 exclusive

    @property
    def centroid(self) -> tuple[float, float]:
        """Item centroid in belt coordinates (camera 0, frame 0)."""
        return self.x0 + self.sprite.centroid[0], self.y0 + self.sprite.centroid[1]


def load_photos(images: Path, realism: Realism) -> list[Photo]:
    """Every ``<images>/<Class>/*.{jpg,jpeg,png}``, decoded to RGB and cut out."""
    images = Path(images)
    if not images.is_dir():
        raise FileNotFoundError(f"--images {images}: not a folder; give a folder of class folders (Class/*.jpg)")
    photos: list[Photo] = []
    for cls_dir in sorted(p for p in images.iterdir() if p.is_dir()):
        for f in sorted(cls_dir.iterdir()):
            if f.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{f}: cannot decode this image; remove or replace it")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if realism.cutout:  # one object per sprite: a photo of three TVs is not one item
                rgb, alpha = cutout(rgb)
                alpha = one_object(alpha)
            else:
                alpha = np.ones(rgb.shape[:2], np.float32)
            photos.append(Photo(cls_dir.name, f"{cls_dir.name}/{f.name}", rgb, alpha, bool(alpha.min() < 0.99)))
    if not photos:
        raise FileNotFoundError(f"--images {images}: no class folders with .jpg/.png images found")
    return photos


def _silhouette_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(alpha > 0.5)
    if len(xs) == 0:
        return 0, 0, alpha.shape[1], alpha.shape[0]
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@dataclass(slots=True)
class _Occupant:
    x0: int
    y0: int
    mask: np.ndarray  # sprite-sized bool, the item dilated by the minimum gap


class _Occupancy:
    """Placed items' masks; answers "would this one touch any of them?" (pairwise, local)."""

    def __init__(self, gap: int):
        self.gap = gap
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1, 2 * gap + 1)) if gap > 0 else None
        self.items: list[_Occupant] = []
        self.keys: list[int] = []  # x0 of items, sorted
        self.max_w = 0

    def dilated(self, sprite: Sprite) -> np.ndarray:
        m = (sprite.alpha > 0.5).astype(np.uint8)
        return (cv2.dilate(m, self.kernel) if self.kernel is not None else m).astype(bool)

    def collides(self, mask: np.ndarray, x0: int, y0: int) -> bool:
        h, w = mask.shape
        lo = bisect.bisect_left(self.keys, x0 - self.max_w)
        hi = bisect.bisect_right(self.keys, x0 + w)
        for o in self.items[lo:hi]:
            oh, ow = o.mask.shape
            ax0, ay0, ax1, ay1 = max(x0, o.x0), max(y0, o.y0), min(x0 + w, o.x0 + ow), min(y0 + h, o.y0 + oh)
            if ax0 >= ax1 or ay0 >= ay1:
                continue
            a = mask[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
            b = o.mask[ay0 - o.y0:ay1 - o.y0, ax0 - o.x0:ax1 - o.x0]
            if np.any(a & b):  # both dilated by the gap: items stay >= ~gap px apart
                return True
        return False

    def prune(self, x_max: int) -> None:
        """Forget items whose x0 > x_max (far downstream: no new item can reach them)."""
        i = bisect.bisect_right(self.keys, x_max)
        del self.keys[i:], self.items[i:]

    def add(self, mask: np.ndarray, x0: int, y0: int) -> None:
        i = bisect.bisect_left(self.keys, x0)
        self.keys.insert(i, x0)
        self.items.insert(i, _Occupant(x0, y0, mask))
        self.max_w = max(self.max_w, mask.shape[1])


@dataclass(frozen=True, slots=True)
class BeltGeometry:
    width: int  # camera 0 frame width (px)
    height: int  # camera 0 frame height = belt width (px)
    speed: int  # belt px per frame (integer)
    fps: float
    line: float = 0.75  # decision line position, fraction of the width
    lanes: int = 4
    gap: int = 5  # items are kept >= ~2*gap px apart (each mask is dilated by gap): >= 10 px, as the issues say


@dataclass(frozen=True, slots=True)
class Arrivals:
    """Poisson arrivals: ``rate`` items/s whose leading edge enters the frame in [t_start, t_end)."""

    rate: float
    t_start: float
    t_end: float
    min_t_cross: float = -math.inf  # items that would cross the decision line earlier are not placed

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"Arrivals: rate must be > 0 items/s, got {self.rate}")


def iter_items(photos: list[Photo], geo: BeltGeometry, arrivals: Arrivals, realism: Realism,
               rng: np.random.Generator) -> Iterator[Placement]:
    """Items arriving as ``arrivals`` says, placed on the belt without touching each other.

    A class is drawn uniformly, then a photo of it. The item goes into a random lane (with
    jitter); if it would touch an item already on the belt, other lanes are tried and then its
    arrival is delayed by a frame at a time (as on a real infeed), which is what makes the
    achieved rate fall below the requested one on an overfull belt. Items that would cross
    the decision line before ``min_t_cross`` are not placed. Yields in order of arrival
    (an item's arrival may be delayed by up to 2 s); memory stays bounded.
    """
    by_class: dict[str, list[Photo]] = {}
    for p in photos:
        by_class.setdefault(p.label, []).append(p)
    classes = sorted(by_class)
    occ = _Occupancy(geo.gap)
    px_per_s = geo.speed * geo.fps
    line_x = geo.line * geo.width
    t, n = arrivals.t_start, 0
    blur = blur_length(realism, geo.speed)
    while True:
        t += float(rng.exponential(1.0 / arrivals.rate))
        if t >= arrivals.t_end:
            return
        cls = classes[int(rng.integers(len(classes)))]
        photo = by_class[cls][int(rng.integers(len(by_class[cls])))]
        pose = sample_pose(photo.alpha, geo.height, realism, rng)
        sprite = make_sprite(photo.rgb, photo.alpha, pose, realism, blur)
        box = _silhouette_box(sprite.alpha)
        mask = occ.dilated(sprite)
        spot = _find_spot(occ, mask, box, geo, t, rng)
        if spot is None:
            continue
        x0, y0 = spot
        if (line_x - x0 - sprite.centroid[0]) / px_per_s < arrivals.min_t_cross:
            continue
        occ.add(mask, x0, y0)
        occ.prune(x0 + 2 * occ.max_w + int(3.0 * px_per_s))
        n += 1
        yield Placement(n, photo, pose, sprite, x0, y0, box)


def _find_spot(occ: _Occupancy, mask: np.ndarray, box: tuple[int, int, int, int], geo: BeltGeometry,
               t: float, rng: np.random.Generator) -> tuple[int, int] | None:
    px_per_s = geo.speed * geo.fps
    bx0, by0, bx1, by1 = box
    bh = by1 - by0
    margin = 4
    lo, hi = margin - by0, geo.height - margin - by1  # y0 range keeping the silhouette on the belt
    if hi < lo:
        return None  # taller than the belt
    lane_w = geo.height / geo.lanes
    max_delay = int(math.ceil(2.0 * geo.fps))  # give up on an item after 2 s of waiting
    for delay in range(0, max_delay + 1):
        x0 = -int(round((t * px_per_s))) - bx1 - delay * geo.speed  # right edge enters at t (+ delay)
        for lane in rng.permutation(geo.lanes):
            cy = (lane + 0.5) * lane_w + rng.uniform(-0.35, 0.35) * lane_w
            y0 = int(np.clip(round(cy - by0 - bh / 2), lo, hi))
            if not occ.collides(mask, x0, y0):
                return x0, y0
    return None
