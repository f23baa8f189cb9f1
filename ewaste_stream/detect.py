"""Item detector for a moving, textured conveyor belt.

A static background model does not work on a belt: the belt scrolls, so its texture is
never in the same place twice. What *is* stable is the belt's average appearance at each
image position (the texture averaged over its motion, times the static lighting and
vignette) and how much the texture varies per row. So the belt model is:

- ``mean``: a per-pixel running average of the belt, seeded with the per-row median of the
  first frame (robust to items already on the belt; a lane packed with items takes the
  median of its gaps) and updated only where no item is,
  so lighting drift and vignetting are learned and items are not (what stays put in the
  picture while the belt moves, e.g. a new light, is learnt slowly after ``GHOST_FRAMES``;
  a sudden change of the whole belt's brightness or colour, a light switched or an
  exposure or white-balance step, rescales the model at once: ``LIGHT_STEP``; a change of
  part of it, one lamp of several, is relearnt fast as a region bigger than any item);
- ``sigma``: per-row robust spread of the belt around that mean (grain, mottle, streaks).

A pixel is an item where its colour differs from the belt mean by more than
``max(threshold, noise_k * sigma_row)`` in any channel: dark items on a dark belt differ by
colour or by being darker still; light items differ a lot. Thin seams and scratches (a few
px across) vanish in the downscaled, lightly blurred image the detector works on
(``downscale``). Items are connected regions (4-connectivity, holes filled, no closing that
could bridge the gap between two neighbours), filtered by ``min_area``/``max_area`` and
ROI; fragments lying mostly inside another region's box are merged into it. A dark item's
smooth surface at the belt's own brightness (a black screen) differs from the belt only by
lacking its grain and streaks: pixels with less detail across the belt's motion than
``smooth_ratio`` x the belt's are item pixels too; so are those with more than ``busy_ratio``
x the belt's (a black keyboard's keys at the belt's brightness; see ``_texture``). Belt-like pixels
that such differences enclose (only an outline and a few bright parts show a black appliance) are
item pixels too (``enclosed_contrast``, see ``_enclosed``). Each frame's
analysis also carries the *core* of that mask: the pixels that differ by brightness or colour,
not by darkness alone (see ``_foreground``).

:class:`BeltMotion` measures the belt's shift between consecutive frames by phase
correlation of the belt-model residual (items and texture move with the belt; static
lighting does not), refined to a twentieth of a working px, which gives the tracker its
velocity at any speed from 0 to 100+ px/frame with no tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .config import DetectorSection
from .messages import Detection, Frame

_ALPHA = 0.05  # belt-model learning rate per frame (belt pixels)
_ALPHA_FG = 0.002  # ... under what stayed foreground for GHOST_FRAMES of belt motion (it is not an item)
GHOST_FRAMES = 60  # frames of belt motion a pixel stays foreground before the belt model starts to learn it
HUGE_FRAMES = 15  # ... before it is learnt at the belt's rate, where it is part of a region bigger than any item
STATIC_PEAK = 0.3  # see BeltMotion._peak
_MOVING = 0.25  # px/frame of the motion image (1/2 the working size): the belt moves
LIGHT_STEP = 0.1  # the whole belt 10 % brighter or darker than its model at once: rescale the model
COLOUR_STEP = 1.5  # ... or its colour (B-G, R-G) off by this many grey levels: shift the model
_SIGMA_MIN = 1.0  # grey levels: floor of the belt's per-row spread
_DETAIL_MIN = 1.0  # grey levels: a belt with less detail across its motion than this has none to tell items by


@dataclass(frozen=True, slots=True)
class FrameAnalysis:
    """What the detector learnt from one frame, at the detector's working resolution."""

    camera: str
    frame_seq: int
    t: float
    mask: np.ndarray  # uint8 (h, w) of the downscaled frame: 1 = item pixel (holes filled)
    scale: tuple[float, float]  # downscaled px -> full-resolution px (sx, sy)
    shift: tuple[float, float] | None  # belt motion since the previous frame, full-res px (dx, dy); None = unknown
    shift_confidence: float  # phase-correlation response 0..1
    contrast: np.ndarray | None = None  # float32 (h, w): difference from the belt in units of the threshold
    light_step: tuple[float, float, float] | None = None  # a lighting step followed in this frame (see BeltDetector)
    core: np.ndarray | None = None  # uint8 (h, w): item pixels by brightness or colour, not by darkness alone
    image: np.ndarray | None = None  # the full-resolution frame (BGR), for looks closer than the mask's scale

    def sure_shift(self, min_confidence: float) -> tuple[float, float] | None:
        """The belt's measured shift when its phase-correlation response reaches ``min_confidence``, else None."""
        return self.shift if self.shift is not None and self.shift_confidence >= min_confidence else None

    def to_full(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        sx, sy = self.scale
        return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


class BeltDetector:
    """Finds items in frames of one camera. One instance per camera (it learns that belt)."""

    def __init__(self, cfg: DetectorSection, camera: str, width: int, height: int) -> None:
        self.cfg = cfg
        self.camera = camera
        self.width, self.height = int(width), int(height)
        self.ds, (self.sw, self.sh) = working_size(cfg, self.width, self.height)
        self.sx, self.sy = self.width / self.sw, self.height / self.sh  # small -> full px
        self.roi = _roi_px(cfg.roi, self.sw, self.sh)
        self.mean: np.ndarray | None = None  # float32 sh x sw x 3: the belt's average look
        self.sigma_l: np.ndarray | None = None  # float32 sh x 1: per-row spread of brightness
        self.sigma_c: np.ndarray | None = None  # float32 sh x 1: per-row spread of colour
        self.motion = BeltMotion()
        self.frames = 0
        self._fg_age: np.ndarray | None = None  # uint8 (sh, sw): frames of motion each pixel has been foreground
        self._texture_age = np.zeros((self.sh, self.sw), np.uint8)  # frames of motion each pixel has been smooth or busy
        self._grey: np.ndarray | None = None  # full-size buffers of _texture, reused frame after frame
        self._across: np.ndarray | None = None
        # no item is bigger than max_area, nor than a quarter of the picture (working px)
        self._max_item_px = min(cfg.max_area / (self.sx * self.sy), 0.25 * self.sw * self.sh)
        self._min_hole_px = 0.5 * cfg.min_item_area(width, height) / (self.sx * self.sy)  # see _enclosed
        self._relearn: np.ndarray | None = None  # uint8 (sh, sw): a changed look of the belt being relearnt
        self._belt_px: np.ndarray | None = None  # bool (sh, sw): last frame's belt pixels (light steps)
        self.light_steps = 0  # sudden lighting changes followed (see _follow_light_step) ...
        self.last_light_step = (1.0, 0.0, 0.0)  # ... and the last one: brightness ratio, B-G and R-G shift
        side = int(np.ceil(cfg.shadow_width * self.height / self.sy)) | 1  # odd, a bit wider than a shadow rim
        self._shadow_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side + 2, side + 2))
        side = int(np.ceil(cfg.bridge_width * self.height / self.sy)) | 1
        self._bridge_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        self._roi_mask: np.ndarray | None = None
        if (self.roi) != (0, 0, self.sw, self.sh):
            x0, y0, x1, y1 = self.roi
            self._roi_mask = np.zeros((self.sh, self.sw), np.uint8)
            self._roi_mask[y0:y1, x0:x1] = 1

    def analyse(self, frame: Frame, small: np.ndarray | None = None) -> FrameAnalysis:
        """Item mask and belt motion of one frame; updates the belt model.

        ``small``: the frame already shrunk by :func:`shrink` (e.g. on the decoding thread)."""
        if frame.width != self.width or frame.height != self.height:
            raise ValueError(f"camera {self.camera}: frame size changed from {self.width}x{self.height} "
                             f"to {frame.width}x{frame.height}")
        if small is None or small.shape[:2] != (self.sh, self.sw):
            small = shrink(frame.image, self.ds, (self.sw, self.sh))
        small = cv2.transform(cv2.GaussianBlur(small, (3, 3), 0).astype(np.float32), _OPPONENT)
        if self.mean is None:
            self._init_model(small)
        light_step = self.last_light_step if self._follow_light_step(small) else None
        lum, chroma, belt_lum = self._residual(small)
        mask, contrast, core = self._foreground(lum, chroma, belt_lum)
        odd, busy_contrast = self._texture(frame.image)
        outline = contrast  # what can enclose an item's body (see _enclosed)
        if odd is not None:  # but not what has stayed smooth or busy in one place (nor its ragged rim)
            stale = cv2.dilate(cv2.compare(self._texture_age, GHOST_FRAMES, cv2.CMP_GE), _KERNEL7)
            mask |= cv2.bitwise_and(odd, odd, mask=cv2.bitwise_not(stale))
            if busy_contrast is not None:
                outline = cv2.max(contrast, self._moving_detail(busy_contrast, stale))
                contrast = cv2.max(contrast, busy_contrast)
        if self.cfg.enclosed_contrast is not None:
            mask |= self._enclosed(mask, outline)
        shift, conf = self.motion.update(lum)
        moving = shift is not None and abs(shift[0]) + abs(shift[1]) >= _MOVING
        if odd is not None:  # frames of motion each pixel has been odd: what stays so is not an item
            self._texture_age = _aged(self._texture_age, moving, odd)
        self._learn(small, lum, chroma, mask, moving=moving)
        self.frames += 1
        if shift is not None:
            shift = (shift[0] * self.sx * 2, shift[1] * self.sy * 2)  # motion works at half the small size
        return FrameAnalysis(camera=self.camera, frame_seq=frame.seq, t=frame.t, mask=fill_holes(mask),
                             scale=(self.sx, self.sy), shift=shift, shift_confidence=conf, contrast=contrast,
                             light_step=light_step, core=core, image=frame.image)

    def detect(self, frame: Frame) -> list[Detection]:
        """Items of one frame on their own (no tracking): connected regions, fragments merged."""
        an = self.analyse(frame)
        return detections_from_mask(an, self.cfg)

    # -- belt model (in brightness / opponent-colour space: mean of B, G, R; B - G; R - G) ----
    def _residual(self, small: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Signed brightness difference from the belt, the colour difference (grey levels,
        the larger of the two opponent-colour differences), and the belt's own brightness."""
        assert self.mean is not None
        lum, d1, d2 = cv2.split(cv2.subtract(small, self.mean))
        chroma = cv2.max(cv2.absdiff(d1, 0.0), cv2.absdiff(d2, 0.0))
        return lum, chroma, cv2.extractChannel(self.mean, 0)

    def _follow_light_step(self, small: np.ndarray) -> bool:
        """A light switched on or off, a camera's exposure or white-balance step: the whole belt
        is brighter or darker than its model by more than LIGHT_STEP, or another colour by more
        than COLOUR_STEP grey levels. Relearnt pixel by pixel, the whole picture would be
        "item" for seconds (the lanes that items cover for longer still), and no item found
        meanwhile; instead the model is scaled (brightness) and shifted (colour) at once.

        The step is the median over last frame's belt pixels (over all pixels when they are
        too few: after a step everything differed), and must be the same in the four quarters
        of the picture: a change of part of the light (one lamp of several) is not scaled into
        the rest; it is relearnt as a region bigger than any item (``HUGE_FRAMES``). Slower
        drift is learnt pixel by pixel. Returns whether it followed a step."""
        assert self.mean is not None
        belt = self._belt_px if self._belt_px is not None else np.ones(small.shape[:2], bool)
        ratio, d1, d2 = _light_change(small[::8, ::8], self.mean[::8, ::8], belt[::8, ::8])
        if abs(ratio - 1.0) <= 0.8 * LIGHT_STEP and abs(d1) <= 0.8 * COLOUR_STEP and abs(d2) <= 0.8 * COLOUR_STEP:
            return False  # nearly every frame: a 64th of the pixels tells
        now, model, belt = small[::4, ::4], self.mean[::4, ::4], belt[::4, ::4]
        ratio, d1, d2 = _light_change(now, model, belt)
        h, w = belt.shape
        quarters = [(ys, xs) for ys in (slice(0, h // 2), slice(h // 2, h)) for xs in (slice(0, w // 2), slice(w // 2, w))]
        steps = np.array([_light_change(now[ys, xs], model[ys, xs], belt[ys, xs]) for ys, xs in quarters])
        ratio = ratio if _same_step(steps[:, 0] - 1.0, LIGHT_STEP) else 1.0
        shift = [d if _same_step(steps[:, c], COLOUR_STEP) else 0.0 for c, d in ((1, d1), (2, d2))]
        if ratio == 1.0 and not any(shift):
            return False
        self.mean *= np.float32(ratio)
        self.mean[..., 1:] += np.float32(shift)
        self.light_steps += 1
        self.last_light_step = (ratio, shift[0], shift[1])
        return True

    def _init_model(self, small: np.ndarray) -> None:
        """The belt model from the first frame: each row's median (items rarely cover half of a
        row). A row that stands out from a smooth (quadratic) profile across the belt is either
        a lane packed with items at start-up, whose gaps still show belt at the profile's
        level: that row takes the median of those gap pixels; or the light itself (a lamp's
        bright band): no pixel is near the profile, and the row keeps its median."""
        row = np.median(small, axis=1)  # (sh, 3)
        limit = np.float32([self.cfg.threshold, self.cfg.chroma_threshold, self.cfg.chroma_threshold])
        y = np.arange(self.sh, dtype=np.float64)
        keep = np.ones(self.sh, bool)
        for _ in range(3):  # robust quadratic across the belt (lighting, vignette), bumps left out
            fit = np.stack([np.polyval(np.polyfit(y[keep], row[keep, c], 2), y) for c in range(3)], axis=1)
            odd = (np.abs(row - fit) > limit).any(axis=1)
            if odd.all() or (odd == ~keep).all():
                break
            keep = ~odd
        for r in np.flatnonzero(odd):
            near = (np.abs(small[r] - fit[r]) <= limit).all(axis=1)  # this row's pixels at the profile's level
            if near.mean() >= 0.02:
                row[r] = np.median(small[r][near], axis=0)
            else:
                odd[r] = False  # the belt's own look (lighting): keep the row's median
        row = row.astype(np.float32)
        self.mean = np.ascontiguousarray(np.repeat(row[:, None, :], self.sw, axis=1), dtype=np.float32)
        lum, chroma, _ = self._residual(small)
        self.sigma_l = _robust_row_sigma(np.abs(lum), None)
        self.sigma_c = _robust_row_sigma(chroma, None)
        if odd.any() and not odd.all():  # items, not belt, in those rows: the spread of the others
            self.sigma_l[odd] = np.median(self.sigma_l[~odd])
            self.sigma_c[odd] = np.median(self.sigma_c[~odd])

    def _foreground(self, lum: np.ndarray, chroma: np.ndarray, belt_lum: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Item pixels: brighter than the belt, another colour, or darker than any shadow can
        make the belt; plus darker regions too wide to be a shadow's rim. Also returns the
        contrast and the *core*: item pixels by brightness or colour alone. Where two items'
        shadows overlap in the gap between them, the belt is darker than one shadow makes it,
        so darkness alone can join neighbours; the tracker cuts a new region along its cores
        (:func:`split.split_by_core`).

        A shadow only dims the belt (to no less than ``shadow_ratio`` of it), keeps its
        colour, and shows as a band no wider than ``shadow_width`` beside its item; an opening
        with a kernel that size removes such bands but keeps dark items and their parts."""
        assert self.sigma_l is not None and self.sigma_c is not None
        k = np.float32(self.cfg.noise_k)
        thr_l = np.maximum(np.float32(self.cfg.threshold), k * self.sigma_l)
        thr_c = np.maximum(np.float32(self.cfg.chroma_threshold), k * self.sigma_c)
        dark_l = np.maximum(thr_l, np.float32(1.0 - self.cfg.shadow_ratio) * belt_lum)
        core = ((lum > thr_l) | (chroma > thr_c)).astype(np.uint8)
        if self.cfg.solid_chroma_threshold is not None:  # faint tint over solid patches: a dark item's body
            thr_s = np.maximum(np.float32(self.cfg.solid_chroma_threshold), k * self.sigma_c)
            core |= cv2.morphologyEx((chroma > thr_s).astype(np.uint8), cv2.MORPH_OPEN, _KERNEL3)
        dim = (lum < -thr_l).astype(np.uint8)
        mask = core | (lum < -dark_l).view(np.uint8) | cv2.morphologyEx(dim, cv2.MORPH_OPEN, self._shadow_kernel)
        if self.cfg.bridge_width > 0:  # dark bands inside an item (between its brighter parts)
            mask |= dim & cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._bridge_kernel)
        if self._roi_mask is not None:
            mask &= self._roi_mask
            core &= self._roi_mask
        contrast = cv2.max(cv2.absdiff(lum, 0.0) / thr_l, chroma / thr_c)
        return mask, contrast, core

    def _texture(self, image: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Item pixels by their texture: less or more detail across the belt's motion than the belt.

        *Smooth*: a belt has grain and streaks; a black screen or a dark plastic front at the
        belt's own brightness has neither, and is the part of a dark item that brightness and
        colour miss (the screen of a monitor whose shading crosses the belt's level falls in two
        without it): detail under ``smooth_ratio`` x the belt's, in patches at least 5 working px
        across. *Busy*: a black keyboard's keys, a battery's print, a speaker grille, at the belt's
        own brightness, have far more detail than the belt: detail over ``busy_ratio`` x the
        belt's, in patches at least 7 working px across (wider than the band of detail along any
        item's outline, which would otherwise join neighbours). Busy pixels also count as
        contrast (``detail / (busy_ratio x the belt's)``), so the tracker's gates on faint new
        regions weigh such an item by what shows it.

        Detail is measured between rows (motion blur is along the belt, so it does not smooth
        this direction) at full resolution, averaged to the working size, in units of the belt's
        median this frame (so a lighting step or a stopped belt changes nothing). Returns the
        0/1 mask of both at the working size and the busy contrast; ``None`` for what is off, or
        for both when the belt itself has no detail to compare with (its median under
        ``_DETAIL_MIN``)."""
        smooth_ratio, busy_ratio = self.cfg.smooth_ratio, self.cfg.busy_ratio
        if smooth_ratio is None and busy_ratio is None:
            return None, None
        if self._grey is None or self._grey.shape != image.shape[:2]:  # kept: fresh ones each frame cost page faults
            self._grey = np.empty(image.shape[:2], np.uint8)
            self._across = np.zeros(image.shape[:2], np.uint8)  # its first and last rows stay 0
        grey, across = self._grey, self._across
        cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=grey)
        cv2.absdiff(grey[2:], grey[:-2], dst=across[1:-1])
        detail = cv2.blur(shrink(across, self.ds, (self.sw, self.sh)).astype(np.float32), (3, 3))
        sample = detail[::4, ::4]
        if self._belt_px is not None:  # the belt's own pixels, unless items cover most of it
            belt = self._belt_px[::4, ::4]
            sample = sample[belt] if 5 * np.count_nonzero(belt) >= belt.size else sample
        level = float(np.median(sample))
        if level < _DETAIL_MIN:
            return None, None
        odd = np.zeros((self.sh, self.sw), np.uint8)
        if smooth_ratio is not None:
            odd |= _patches(detail < smooth_ratio * level, _KERNEL5)
        busy_contrast = None
        if busy_ratio is not None:
            busy_contrast = detail * np.float32(1.0 / (busy_ratio * level))
            odd |= _patches(busy_contrast > 1.0, _KERNEL7)
        if self._roi_mask is not None:
            odd &= self._roi_mask
        return odd, busy_contrast

    def _moving_detail(self, busy_contrast: np.ndarray, stale: np.ndarray) -> np.ndarray:
        """``busy_contrast`` without the detail that stays in place: ``stale`` (what has been busy
        there for ``GHOST_FRAMES`` of motion, a grille over the belt) and the belt's own edges,
        where its model changes by more than ``threshold`` between rows (the edge of a lamp's band
        of light, there from the first frame)."""
        assert self.mean is not None
        lum = cv2.extractChannel(self.mean, 0)
        edge = np.zeros(lum.shape, np.uint8)
        cv2.compare(cv2.absdiff(lum[2:], lum[:-2]), float(self.cfg.threshold), cv2.CMP_GT, dst=edge[1:-1])
        still = cv2.bitwise_or(cv2.dilate(edge, _KERNEL3), stale)
        return cv2.bitwise_and(busy_contrast, busy_contrast, mask=cv2.bitwise_not(still))

    def _enclosed(self, mask: np.ndarray, contrast: np.ndarray) -> np.ndarray:
        """The body of a dark item that only its outline shows: belt-like pixels enclosed by pixels
        that differ from the belt by more than ``enclosed_contrast`` x the thresholds (the mask,
        the dim rims and shadows that the mask leaves out as shadow, and ``_moving_detail``), in
        holes at least half an item's ``min_area`` and no bigger than an item (the area inside the
        hole's contour), with the outline pixels 2 working px around them. A black keyboard or
        microwave front whose mask fell in pieces (each piece its own item) is then one region.
        Returns 0/1 uint8 at the working size."""
        outline = cv2.compare(contrast, float(self.cfg.enclosed_contrast), cv2.CMP_GT) // 255
        outline |= mask
        # the holes of the outline's regions (the inner contours; one pass, on one thread)
        contours, hierarchy = cv2.findContours(outline, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        if hierarchy is None:
            return np.zeros_like(outline)
        holes = [contours[i] for i in np.flatnonzero(hierarchy[0, :, 3] >= 0)  # inner contours only
                 if self._min_hole_px <= cv2.contourArea(contours[i]) <= self._max_item_px]
        if not holes:
            return np.zeros_like(outline)
        body = np.zeros_like(outline)
        cv2.drawContours(body, holes, -1, 1, thickness=cv2.FILLED)
        body &= 1 - outline
        if self._roi_mask is not None:
            body &= self._roi_mask
        return body | cv2.bitwise_and(cv2.dilate(body, _KERNEL5), outline)

    def _learn(self, small: np.ndarray, lum: np.ndarray, chroma: np.ndarray, mask: np.ndarray, moving: bool) -> None:
        assert self.mean is not None
        near = cv2.dilate(mask, _KERNEL5)  # keep item borders and shadows out of the belt model
        belt = (near == 0).astype(np.uint8)
        self._belt_px = belt > 0
        cv2.accumulateWeighted(small, self.mean, _ALPHA, belt)
        # Only what stays put while the belt moves is slowly learnt (a lighting change, something
        # stuck in view): an item moving with the belt covers a pixel for a few frames, and learning
        # it then leaves a trail of its colour in the belt model; items on a stopped belt are items.
        age = self._fg_age if self._fg_age is not None else np.zeros(near.shape, np.uint8)
        self._fg_age = _aged(age, moving, near)  # 0 on the belt
        ghost = cv2.compare(self._fg_age, GHOST_FRAMES, cv2.CMP_GE)
        if cv2.countNonZero(ghost):
            cv2.accumulateWeighted(small, self.mean, _ALPHA_FG, ghost)
        # A region bigger than any item (max_area, a quarter of the picture) that stays for
        # HUGE_FRAMES of motion is a change of the belt's look (one lamp of several went out),
        # not items: learnt as fast as the belt, until it is belt again.
        if self._relearn is not None:
            self._relearn = cv2.bitwise_and(self._relearn, near)
        old = cv2.compare(self._fg_age, HUGE_FRAMES, cv2.CMP_GE)
        if cv2.countNonZero(old) > self._max_item_px:  # else no region of them can be bigger than an item
            n, labels, stats, _ = cv2.connectedComponentsWithStats(cv2.bitwise_and(mask, mask, mask=old), connectivity=4)
            big = stats[:, cv2.CC_STAT_AREA] > self._max_item_px
            big[0] = False
            if big.any():
                fresh = big[labels].astype(np.uint8)
                self._relearn = fresh if self._relearn is None else cv2.bitwise_or(self._relearn, fresh)
        if self._relearn is not None and cv2.countNonZero(self._relearn):
            cv2.accumulateWeighted(small, self.mean, _ALPHA, self._relearn)
        if self.frames % 4 == 0:
            self.sigma_l = _blend_sigma(self.sigma_l, _robust_row_sigma(np.abs(lum), belt))
            self.sigma_c = _blend_sigma(self.sigma_c, _robust_row_sigma(chroma, belt))


_KERNEL5 = np.ones((5, 5), np.uint8)
_KERNEL7 = np.ones((7, 7), np.uint8)
_KERNEL3 = np.ones((3, 3), np.uint8)
_OPPONENT = np.array([[1 / 3, 1 / 3, 1 / 3], [1.0, -1.0, 0.0], [0.0, -1.0, 1.0]], np.float32)  # from BGR


def _patches(sel: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """0/1 uint8 of the pixels of ``sel`` (bool) in patches at least ``kernel`` across (an opening)."""
    return cv2.morphologyEx(sel.view(np.uint8), cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)


def _aged(age: np.ndarray, moving: bool, present: np.ndarray) -> np.ndarray:
    """``age`` (uint8 frames of belt motion) one frame on: +1 where ``present`` (0/1) and the belt
    moved, capped at ``GHOST_FRAMES``; 0 where not present."""
    return cv2.multiply(cv2.min(cv2.add(age, int(moving)), GHOST_FRAMES), present)


def _light_change(now: np.ndarray, model: np.ndarray, belt: np.ndarray) -> tuple[float, float, float]:
    """(brightness ratio, B-G shift, R-G shift) of ``now`` against the belt ``model``: medians over
    the ``belt`` pixels, or over all pixels when fewer than a fifth are belt."""
    sel = belt if belt.mean() >= 0.2 else np.ones(belt.shape, bool)
    ratio = float(np.median(now[..., 0][sel] / np.maximum(model[..., 0][sel], 1.0)))
    if not np.isfinite(ratio):
        ratio = 1.0
    d1, d2 = (float(np.median(now[..., c][sel] - ratio * model[..., c][sel])) for c in (1, 2))
    return ratio, d1, d2


def _same_step(changes: np.ndarray, limit: float) -> bool:
    """All ``changes`` beyond ``limit``, the same way, and within ``limit`` of each other."""
    return bool((np.all(changes > limit) or np.all(changes < -limit)) and np.ptp(changes) <= limit)


def working_size(cfg: DetectorSection, width: int, height: int) -> tuple[int, tuple[int, int]]:
    """(downscale factor, (w, h)) of the image the detector works on for this frame size."""
    ds = cfg.factor(height)
    return ds, (max(8, width // ds), max(8, height // ds))


def shrink(image: np.ndarray, factor: int, size: tuple[int, int]) -> np.ndarray:
    """The detector's working image: ``image`` made ``factor`` times smaller (uint8, INTER_AREA)."""
    img = image
    while factor % 2 == 0 and factor > 1:  # halving with INTER_AREA is ~7x faster than one /4 step
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
        factor //= 2
    if img.shape[1] != size[0] or img.shape[0] != size[1]:
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img



def _robust_row_sigma(absdev: np.ndarray, belt: np.ndarray | None) -> np.ndarray:
    """Per-row spread (Gaussian sigma from the mean absolute deviation) over belt pixels."""
    if belt is None:
        mad = np.median(absdev, axis=1, keepdims=True) * np.float32(1.4826)
        return np.maximum(mad, _SIGMA_MIN).astype(np.float32)
    counts = belt.sum(axis=1, keepdims=True, dtype=np.float32)
    tot = (absdev * belt).sum(axis=1, keepdims=True)
    est = np.where(counts >= max(4, belt.shape[1] // 8), 1.25 * tot / np.maximum(counts, 1), np.nan)
    return est.astype(np.float32)


def _blend_sigma(old: np.ndarray | None, new: np.ndarray) -> np.ndarray:
    assert old is not None
    out = np.where(np.isfinite(new), 0.8 * old + 0.2 * np.maximum(new, _SIGMA_MIN), old)
    return out.astype(np.float32)


class BeltMotion:
    """Belt shift between consecutive frames, from the brightness residual (belt texture and
    items move with the belt; the static lighting is in the belt mean).

    Phase correlation at half the working size finds the shift at any speed; its sub-pixel part
    locks toward whole px there (a belt moving 4.5 px a frame of that image reads as 4.3 or 4.7,
    +-2 px of the full picture), which would move every footprint off its item by as much as a
    neighbour's gap. So the shift is then refined at the working size, per axis: the whole-px
    shift with the least squared difference of the two frames, and the minimum of a parabola
    through it and its neighbours (36 px a frame read as 36.0 +- 0.05 on simulated 720p video)."""

    def __init__(self) -> None:
        self.prev_spec: np.ndarray | None = None  # the last frame's windowed spectrum at half size ...
        self.prev_full: np.ndarray | None = None  # ... and that frame at the working size
        self.window: np.ndarray | None = None
        self.last = (0.0, 0.0)  # the last shift measured (half-size px)

    def update(self, lum: np.ndarray) -> tuple[tuple[float, float] | None, float]:
        """Shift (dx, dy) in px of the image *half the size of* ``lum``, and the response."""
        img = cv2.resize(lum, (lum.shape[1] // 2, lum.shape[0] // 2), interpolation=cv2.INTER_AREA)
        if self.window is None or self.window.shape != img.shape:
            self.window = cv2.createHanningWindow((img.shape[1], img.shape[0]), cv2.CV_32F)
            self.prev_spec = None
        spec = _spectrum(img, self.window)
        prev_spec, self.prev_spec = self.prev_spec, spec
        prev_full, self.prev_full = self.prev_full, lum
        if prev_spec is None or prev_full is None or prev_full.shape != lum.shape:
            return None, 0.0
        found = self._peak(prev_spec, spec)
        if found is None:
            return None, 0.0
        (dx, dy), response = found
        fx, fy = refine_shift(prev_full, lum, 2.0 * dx, 2.0 * dy, steps=1)
        self.last = (0.5 * fx, 0.5 * fy)
        return self.last, response

    def _peak(self, fa: np.ndarray, fb: np.ndarray) -> tuple[tuple[float, float], float] | None:
        """Phase correlation of the frame with spectrum ``fb`` against the one with ``fa``: the
        shift at its highest peak (sub-pixel: the centroid of the 3x3 around it) and the peak's
        response (the sum of the 5x5 around it, as ``cv2.phaseCorrelate`` gives). Something
        bright that stays put while the belt moves (a new light, dirt on the window, before the
        belt model learns it) makes a second peak at zero shift, which may be the higher: then
        the peak nearest the last motion is kept when it is at least STATIC_PEAK of the zero one."""
        cross = cv2.mulSpectrums(fb, fa, 0, conjB=True)
        re, im = cv2.split(cross)
        mag = cv2.max(cv2.magnitude(re, im), 1e-9)
        r = cv2.idft(cv2.merge([cv2.divide(re, mag), cv2.divide(im, mag)]), flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
        _, top, _, (px, py) = cv2.minMaxLoc(r)
        if not np.isfinite(top):
            return None
        h, w = r.shape

        def signed(y: int, x: int) -> tuple[int, int]:
            return (x - w if x > w // 2 else x), (y - h if y > h // 2 else y)

        sx, sy = signed(py, px)
        if abs(sx) <= 1 and abs(sy) <= 1 and (abs(self.last[0]) > 1.5 or abs(self.last[1]) > 1.5):
            lx, ly = int(round(self.last[0])) % w, int(round(self.last[1])) % h
            ys, xs = np.arange(ly - 2, ly + 3) % h, np.arange(lx - 2, lx + 3) % w
            near = r[np.ix_(ys, xs)]
            j = np.unravel_index(int(np.argmax(near)), near.shape)
            if near[j] >= STATIC_PEAK * top:
                py, px = int(ys[j[0]]), int(xs[j[1]])
                sx, sy = signed(py, px)
        ys, xs = np.arange(py - 2, py + 3) % h, np.arange(px - 2, px + 3) % w
        top = float(r[np.ix_(ys, xs)].sum())  # as cv2.phaseCorrelate's response
        patch = np.maximum(r[np.ix_(ys[1:4], xs[1:4])], 0.0)
        mass = float(patch.sum())
        if mass <= 0:
            return (float(sx), float(sy)), top
        offs = np.array([-1.0, 0.0, 1.0])
        return (sx + float((patch.sum(axis=0) * offs).sum()) / mass, sy + float((patch.sum(axis=1) * offs).sum()) / mass), top


def _spectrum(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    return cv2.dft(cv2.multiply(img, window), flags=cv2.DFT_COMPLEX_OUTPUT)


def _sq_diff(a: np.ndarray, b: np.ndarray, kx: int, ky: int) -> float:
    """Mean squared difference of ``b`` and ``a`` moved by (kx, ky) whole px, over their overlap."""
    h, w = a.shape
    if abs(kx) >= w - 8 or abs(ky) >= h - 8:
        return float("inf")
    sa = a[max(0, -ky):h - max(0, ky), max(0, -kx):w - max(0, kx)]
    sb = b[max(0, ky):h - max(0, -ky), max(0, kx):w - max(0, -kx)]
    return float(cv2.norm(sa, sb, cv2.NORM_L2SQR)) / sa.size


def refine_shift(a: np.ndarray, b: np.ndarray, dx: float, dy: float, steps: int = 3) -> tuple[float, float]:
    """Sub-pixel shift of ``b`` against ``a`` near (dx, dy): per axis, the whole-px shift with
    the least squared difference (a walk of at most ``steps`` px from the nearest one), then
    a parabola through it and its two neighbours. Keeps the estimate given for an axis where
    no such minimum is found."""
    k = [int(round(dx)), int(round(dy))]
    out = [dx, dy]
    for axis in (0, 1):
        def at(j: int) -> float:
            kk = list(k)
            kk[axis] = j
            return _sq_diff(a, b, kk[0], kk[1])
        j = k[axis]
        lo, c, hi = at(j - 1), at(j), at(j + 1)
        for _ in range(steps):
            if lo < c and lo <= hi:
                j, hi, c, lo = j - 1, c, lo, at(j - 2)
            elif hi < c:
                j, lo, c, hi = j + 1, c, hi, at(j + 2)
            else:
                break
        den = lo - 2.0 * c + hi
        if np.isfinite(den) and den > 0 and c <= lo and c <= hi:
            out[axis] = j + 0.5 * (lo - hi) / den
            k[axis] = j
    return out[0], out[1]


def _roi_px(roi: tuple[float, float, float, float] | None, w: int, h: int) -> tuple[int, int, int, int]:
    if roi is None:
        return 0, 0, w, h
    x0, y0, x1, y1 = roi
    return int(round(x0 * w)), int(round(y0 * h)), max(int(round(x1 * w)), 1), max(int(round(y1 * h)), 1)


FRAGMENT_FRAC = 0.25  # regions smaller than this fraction of min_area are noise


def regions(mask: np.ndarray, min_px: float) -> np.ndarray:
    """Connected regions (4-connected) of at least ``min_px`` pixels.

    Rows: x0, y0, x1, y1 (exclusive), area, sum of x, sum of y (sums let regions merge)."""
    n, _, stats, cents = cv2.connectedComponentsWithStats(mask, connectivity=4)
    st, ce = stats[1:].astype(np.float64), cents[1:]
    keep = st[:, 4] >= min_px
    st, ce = st[keep], ce[keep]
    x0, y0 = st[:, 0], st[:, 1]
    return np.column_stack([x0, y0, x0 + st[:, 2], y0 + st[:, 3], st[:, 4], ce[:, 0] * st[:, 4], ce[:, 1] * st[:, 4]])


def region_detection(an: FrameAnalysis, r: np.ndarray | list[float]) -> Detection:
    """A region (row of :func:`regions`, downscaled px) as a full-resolution Detection."""
    x0, y0, x1, y1, a, mx, my = (float(v) for v in r)
    sx, sy = an.scale
    return Detection(camera=an.camera, frame_seq=an.frame_seq, t=an.t, bbox=an.to_full((x0, y0, x1, y1)),
                     centroid=((mx / a + 0.5) * sx, (my / a + 0.5) * sy), area=a * sx * sy)


def detections_from_mask(an: FrameAnalysis, cfg: DetectorSection) -> list[Detection]:
    px = an.scale[0] * an.scale[1]
    h, w = an.mask.shape
    min_area = cfg.min_item_area(int(round(w * an.scale[0])), int(round(h * an.scale[1])))
    regs = _merge_fragments(regions(an.mask, min_area * FRAGMENT_FRAC / px))
    out = [region_detection(an, r) for r in regs if min_area <= r[4] * px <= cfg.max_area]
    return sorted(out, key=lambda d: (d.bbox[0], d.bbox[1]))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled


def _merge_fragments(regions: np.ndarray, inside: float = 0.7) -> np.ndarray:
    """Merge a region into a bigger one when >= ``inside`` of its box lies in the bigger box.

    ``regions`` rows: x0, y0, x1, y1, area, sum x, sum y. Repeats until nothing merges.
    """
    while len(regions) > 1:
        r = regions[np.argsort(-regions[:, 4], kind="stable")]
        w = np.minimum(r[:, None, 2], r[None, :, 2]) - np.maximum(r[:, None, 0], r[None, :, 0])
        h = np.minimum(r[:, None, 3], r[None, :, 3]) - np.maximum(r[:, None, 1], r[None, :, 1])
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        own = (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
        frac = inter / own[:, None]  # frac[i, j]: share of box i inside box j
        np.fill_diagonal(frac, 0.0)
        frac = np.tril(frac)  # only merge a smaller region (later row) into a bigger one
        i, j = np.unravel_index(int(np.argmax(frac)), frac.shape)
        if frac[i, j] < inside:
            return r
        big, small = r[j], r[i]
        merged = np.array([min(big[0], small[0]), min(big[1], small[1]), max(big[2], small[2]),
                           max(big[3], small[3]), big[4] + small[4], big[5] + small[5], big[6] + small[6]])
        regions = np.vstack([np.delete(r, [i, j], axis=0), merged])
    return regions
