"""Frame rendering: a scrolling belt strip, integer-pixel sprite pastes, per-camera views.

The belt is drawn once as a periodic strip (a belt is a loop) and each frame is a window of
it; items are pasted at integer pixels; camera 0 looks straight down (image = belt
coordinates); cameras 1.. see the same belt through a mild homography with their own
lighting drift, vignette and sensor noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from .compose import belt_texture, paste_sprite
from .effects import NoiseBank, Realism, apply_camera, blur_length, lighting_gain, motion_blur, vignette_map
from .layout import BeltGeometry, Placement


@dataclass(frozen=True, slots=True)
class Camera:
    """One view of the belt. ``belt_to_image`` maps belt coordinates (camera 0 px) to its pixels."""

    index: int
    belt_to_image: np.ndarray  # 3x3 float64
    phase: np.ndarray  # lighting drift phases (3,)
    gain: float  # exposure difference between cameras
    seed: int

    @property
    def image_to_belt(self) -> np.ndarray:
        return np.linalg.inv(self.belt_to_image)

    def to_meta(self, geo: BeltGeometry) -> dict:
        hb = self.belt_to_image / self.belt_to_image[2, 2]
        ib = self.image_to_belt / self.image_to_belt[2, 2]
        return {"camera": f"cam{self.index}", "belt_to_image": np.round(hb, 9).tolist(),
                "image_to_belt": np.round(ib, 9).tolist(),
                "belt_units": "px of camera 0 at frame 0 (x along the belt, y across; y / height = 0..1 of belt width)"}


@dataclass(slots=True)
class _CameraState:
    rng: np.random.Generator  # noise window per frame
    warp: np.ndarray | None  # padded canvas -> image (None: camera 0, a plain crop)
    vignette: np.ndarray | None
    noise: NoiseBank


def make_cameras(n: int, geo: BeltGeometry, realism: Realism, rng: np.random.Generator) -> list[Camera]:
    """Camera 0 is the identity; the others perturb the image corners by up to ``perspective`` of the size."""
    w, h = geo.width, geo.height
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    cams = []
    for i in range(n):
        if i == 0 or realism.perspective <= 0:
            m = np.eye(3)
        else:
            jitter = rng.uniform(-1, 1, (4, 2)) * realism.perspective * np.float32([w, h])
            belt_pts = (corners + jitter).astype(np.float32)  # what image corner k sees on the belt
            m = cv2.getPerspectiveTransform(belt_pts, corners).astype(np.float64)
        cams.append(Camera(i, m, rng.uniform(0, 2 * np.pi, 3), 1.0 if i == 0 else float(rng.uniform(0.92, 1.08)),
                           int(rng.integers(2**31))))
    return cams


class BeltRenderer:
    """Renders frame ``f`` for every camera. Pull placements from ``items`` as the belt needs them."""

    def __init__(self, geo: BeltGeometry, items: Iterator[Placement], cameras: list[Camera], realism: Realism,
                 rng: np.random.Generator):
        self.geo, self.realism, self.cameras = geo, realism, cameras
        self.pad = 0 if len(cameras) == 1 else int(math.ceil(realism.perspective * max(geo.width, geo.height))) + 4
        self.cw, self.ch = geo.width + 2 * self.pad, geo.height + 2 * self.pad
        self.loop = 6 * self.cw  # belt loop length in px (its texture repeats after this)
        strip = belt_texture(self.ch, self.loop, rng, strength=realism.texture, periodic=True)
        strip = np.concatenate([strip, strip[:, :self.cw]], axis=1)
        self.strip = motion_blur(strip, blur_length(realism, geo.speed))
        self._items = items
        self._pending: Placement | None = None
        self.active: list[Placement] = []
        self._last_frame = 0
        self._states = [self._camera_state(c) for c in cameras]

    def _camera_state(self, cam: Camera) -> _CameraState:
        r = np.random.default_rng(cam.seed)
        g, real = self.geo, self.realism
        warp = None
        if cam.index > 0:
            shift = np.array([[1, 0, -self.pad], [0, 1, -self.pad], [0, 0, 1]], np.float64)
            warp = cam.belt_to_image @ shift
        vig = vignette_map(g.height, g.width, real.vignette, r, tint=0.5 * real.lighting)
        return _CameraState(r, warp, vig, NoiseBank(g.height, g.width, real.noise, r))

    def _advance(self, f: int) -> None:
        """Pull every item that can be visible in frame f; forget the ones that left the canvas."""
        if f < self._last_frame:
            raise ValueError(f"BeltRenderer renders forward only: frame {f} after frame {self._last_frame}")
        self._last_frame = f
        shift = self.geo.speed * f
        while True:
            if self._pending is None:
                self._pending = next(self._items, None)
                if self._pending is None:
                    break
            p = self._pending
            if p.x0 + shift < -(3 * self.geo.speed * self.geo.fps + 1024 + self.pad):
                break  # far upstream: later items (delayed by <= 2 s) cannot be visible yet either
            self.active.append(p)
            self._pending = None
        self.active = [p for p in self.active if p.x0 + shift - self.pad < self.geo.width + self.pad]

    def visible(self, f: int) -> list[tuple[Placement, int, int]]:
        """(placement, x0, y0 in camera-0 px) of the items drawn in frame f, in paste order."""
        self._advance(f)
        shift = self.geo.speed * f
        out = [(p, p.x0 + shift, p.y0) for p in self.active]
        return [o for o in sorted(out, key=lambda o: o[0].item)
                if o[1] + o[0].sprite.size[0] > -self.pad and o[1] < self.geo.width + self.pad]

    def belt_canvas(self, f: int, items: bool = True, only: set[int] | None = None) -> np.ndarray:
        """The belt (with items) in belt coordinates, padded by ``pad`` px, no camera effects."""
        s = (-self.geo.speed * f) % self.loop
        canvas = self.strip[:, s:s + self.cw].copy()
        if items:
            for p, x, y in self.visible(f):
                if only is None or p.item in only:
                    paste_sprite(canvas, p.sprite, x + self.pad, y + self.pad)
        return canvas

    def camera_frame(self, canvas: np.ndarray, cam: Camera, f: int, effects: bool = True) -> np.ndarray:
        """Camera ``cam``'s RGB view of a belt canvas at frame f."""
        st, g, real = self._states[cam.index], self.geo, self.realism
        if st.warp is not None:
            img = cv2.warpPerspective(canvas, st.warp, (g.width, g.height), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE)
        elif self.pad:
            img = canvas[self.pad:self.pad + g.height, self.pad:self.pad + g.width].copy()
        else:
            img = canvas  # camera 0 without padding: the canvas is the image (edited in place)
        if not effects:
            return img
        gain = cam.gain * lighting_gain(f / g.fps, cam.phase, real.lighting)
        return apply_camera(img, gain, st.vignette, st.noise.sample(st.rng))

    def render(self, f: int) -> list[np.ndarray]:
        """RGB frames of every camera at frame f (camera 0 last: it may reuse the canvas in place)."""
        canvas = self.belt_canvas(f)
        frames: list[np.ndarray] = [canvas] * len(self.cameras)
        for cam in reversed(self.cameras):
            frames[cam.index] = self.camera_frame(canvas, cam, f)
        return frames
