"""Tracker with belt kinematics, for one or several cameras on the same belt.

Items lie still on the belt, so they all move with it: the belt's shift between two frames
(measured by the detector's phase correlation, per camera, in image px) predicts where
every item is now, at any belt speed, with nothing to tune. Each track keeps, per camera,
a *footprint* (the item's pixels over the last few frames, moved with the belt); the
detector's mask is cut along those footprints (:mod:`ewaste_stream.segment`), which keeps
neighbours a few px apart apart and an item with dark parts in one piece.

New items: a region still touching the picture's upstream edge is only part of an item,
so it becomes a track once it is all in view (a small region beside it waits with it:
``entering_near``/``entering_small``); then it is cut at narrow necks (unless that makes its
parts less box-like: ``split_min_rect_gain``) and along separate bright or coloured cores
(when that makes them more box-like: ``core_split_rect_gain``; then again on the
full-resolution picture, where a motion-blurred 10 px gap still shows: ``fine_split_rect_gain``), a region
longer than any item is cut across where narrowest (``new_max_length``: two items one behind the other whose
gap blur and shadows closed, no neck between them; no join makes a piece that long either), small fragments
right next to a compact item join it (or a little further off, when they complete its box:
``fragment_join_near``), two pieces of any size a few px apart that make one box together join
(``item_join_near``: a dark item cut in two by a dark band), and regions thinner than any item or that barely
differ from the belt (its summed contrast too low: ``min_contrast_area``) are ignored, unless
such a faint region lies alone on the belt (``isolated_min_contrast``, ``isolated_gap``). A region
under the min item area is a fragment, unless it differs clearly from the belt and lies alone
(``small_item_area``, ``small_item_min_contrast``, ``small_item_gap``): then it is an item once
seen in ``small_item_hits`` frames (the part of a dark item that the detector sees).

Tracks live in belt coordinates (``u`` along travel, ``v`` across; :mod:`geometry`), so a
second camera's view of an item joins the same track: a new piece in one camera is matched
by centroids to the tracks the other cameras follow, and a small piece only one camera sees
inside an item another camera sees whole is folded into it (``TrackStep.merged``).

Lifecycle: tentative -> confirmed (``min_hits`` frames; ``small_item_hits`` for one born
small) -> decided (by the pipeline, when the centroid crosses the decision line or the track is
lost) -> closed (out of view). An item
decided at the line coasts on: its footprint moves with the belt and claims its pixels (it is
not found again as a new item), but it is no longer segmented or measured.

Pieces of one item (tracked or new) that lie inside a bigger piece's outline join it
(:func:`join.absorb_inside`): a dark item's fragment that was followed before the rest
of the item came into view no longer becomes a second decision. Two tracked pieces side by
side that together stay within the length of the longest item and face each other along a cut,
in ``part_join_frames`` frames, are one item too (:func:`join.parts_of_one_item`,
``part_join_max_length``): a dark item followed as two parts from the start.

Known limits (simulated 1280x720, 60 fps, ~35 items/s, 22 20 s videos): ~0.8 % missed (dark
items on the dark belt, beside other items, of which the detector sees a sliver or nothing;
small neighbours 10 px apart that blur, shadows or a bright part join at 1/4 scale, together no
longer than one item) and ~0.6 %
duplicates (dark items that break up into parts that do not face each other): the mask alone
cannot tell every part from a neighbour. Two small items side by side
at the same angle, closer than ``fragment_join_near``, can join; so can two items of any size
whose union is a box, closer than ``item_join_near``, and two small items lying touching whose
union is no longer than ``part_join_max_length``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from .config import DetectorSection, TrackerSection
from .detect import FRAGMENT_FRAC, FrameAnalysis
from .geometry import BeltMap, box_overlap, point_in_box
from .messages import BBox
from .join import JoinRules, absorb_inside, join_fragments, parts_of_one_item, union
from .segment import EMPTY, Piece, Prior, alone, mean_contrast, merge_footprint, move_footprint, occupancy, segment
from .split import bridged, cut_too_long, inscribed_radius, parted, split_by_core, split_by_fine_core, split_piece

INSIDE_SHARE = 0.5  # a piece this much inside a bigger piece's convex hull is part of that item
FRAGMENT_SHARE = 0.35  # a piece seen by one camera only is a fragment when this much smaller than the item


class TrackState(str, enum.Enum):
    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    DECIDED = "decided"
    CLOSED = "closed"


class Ignored(str, enum.Enum):
    """Why a new region of the detector's mask did not become a track (``TrackStep.ignored``): what a
    person tuning the tracker looks at when an item went by with no box (``replay --annotate``)."""

    FRAGMENT = "fragment"  # under tracker.small_item_area x the min item area: a speck or a part of an item
    TOO_BIG = "too_big"  # over detector.max_area
    SMALL_FAINT = "small_faint"  # under the min item area, mean contrast under small_item_min_contrast
    SMALL_CROWDED = "small_crowded"  # ... clear, but another region within small_item_gap: a part of it
    FAINT = "faint"  # barely off the belt (min_contrast, min_contrast_area, isolated_min_contrast): belt texture
    FAINT_CROWDED = "faint_crowded"  # ... faint, with another region within isolated_gap: a dark part of it
    THIN = "thin"  # thinner than tracker.min_item_radius: a shadow's rim, a blurred edge, a streak


@dataclass(slots=True)
class CameraView:
    """One camera's view of a track (footprint in that camera's downscaled px)."""

    camera: str
    x0: int
    y0: int
    age: np.ndarray  # uint8 per pixel: frames since the item last covered it (EMPTY = never)
    footprint: np.ndarray  # uint8 1 where age != EMPTY (merge_footprint keeps the two together)
    seq: int  # frame seq of the last observation
    t: float
    bbox: BBox  # full-resolution px, last observation
    centroid: tuple[float, float]
    area: float
    truncated: bool  # touches the picture's upstream/downstream edge: not the whole item
    entering: int  # +1/-1 while coming in over the left/right edge
    hits: int = 1
    at_side: bool = False  # touches the top/bottom edge of the picture (the belt's side)
    fx: float = 0.0  # sub-pixel shift not yet applied to the footprint
    fy: float = 0.0


@dataclass(slots=True)
class Track:
    id: int
    t_first: float
    t_last: float  # last observation by any camera
    u: float  # belt position of the centroid at t_last
    v: float
    box: tuple[float, float, float, float]  # belt box at t_last
    state: TrackState = TrackState.TENTATIVE
    hits: int = 1  # time steps with an observation
    u_prev: float | None = None
    t_prev: float | None = None
    t_cross: float | None = None
    cross_bbox: BBox | None = None  # image px of the camera that saw it cross
    cross_v: float | None = None
    born_past_line: bool = False  # first seen beyond the line: an item decided already
    lost: bool = False
    min_hits: int = 0  # observations before it is confirmed; 0: tracker.min_hits
    views: dict[str, CameraView] = field(default_factory=dict)

    def predict_u(self, t: float, velocity: float) -> float:
        return self.u + velocity * (t - self.t_last)

    def predicted_box(self, t: float, velocity: float) -> tuple[float, float, float, float]:
        du = velocity * (t - self.t_last)
        u0, v0, u1, v1 = self.box
        return u0 + du, v0, u1 + du, v1

    @property
    def decidable(self) -> bool:
        return self.state == TrackState.CONFIRMED and not self.born_past_line


@dataclass(frozen=True, slots=True)
class TrackStep:
    """What changed in one camera frame."""

    camera: str
    t: float
    seen: list[tuple[Track, CameraView]]  # tracks observed in this frame
    crossed: list[Track]  # crossed the decision line in this step
    lost: list[Track]  # not seen for too long while in view (not yet decided)
    closed: list[Track]  # gone for good
    merged: list[tuple[int, int]] = field(default_factory=list)  # (absorbed, kept): two tracks were one item
    ignored: list[tuple[BBox, Ignored]] = field(default_factory=list)  # new regions not tracked (full-res px), and why


@dataclass(frozen=True, slots=True)
class _Sizes:
    """A camera's size thresholds for one step, in px of its detector's working image (areas in px²)."""

    px: float  # full-resolution px² per working px²
    min_area: float  # the smallest item, full-resolution px²
    min_px: float  # the same, working px²
    small: tuple[float, int]  # a new piece this small (area) this near (px) an entering one is part of it
    radius: float  # the thinnest neck that does not split a piece
    thinnest: float  # the smallest inscribed radius of an item
    longest: float | None  # a new piece longer than this is several items (None: not cut)


@dataclass(slots=True)
class _Camera:
    map: BeltMap
    width: int = 0  # full-resolution px
    height: int = 0
    sw: int = 0  # downscaled px
    sh: int = 0
    scale: tuple[float, float] = (1.0, 1.0)
    last_t: float | None = None
    dt: float | None = None  # frame period estimate
    rate: tuple[float, float] = (0.0, 0.0)  # last good image shift per second (px/s)
    ended: bool = False  # told that its source is gone
    extent: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # belt box it sees
    upstream: int = 1  # +1: items enter over the left edge of the picture, -1: the right


class Tracker:
    """Follows items over frames of one or more cameras. Not thread-safe: one caller."""

    def __init__(self, cfg: TrackerSection, maps: Mapping[str, BeltMap], line_u: float | None = None,
                 detector: DetectorSection | None = None) -> None:
        self.cfg = cfg
        self.det_cfg = detector or DetectorSection()
        self.cams: dict[str, _Camera] = {c: _Camera(m) for c, m in maps.items()}
        self.line_u = line_u
        self.tracks: dict[int, Track] = {}
        self.velocity = 0.0  # belt units per second along u
        self._next_id = 1
        self._latest_t: float | None = None
        self.footprint_frames = max(3, cfg.max_missed_frames)
        self._together: dict[tuple[int, int], int] = {}  # (older, younger) track: frames seen as parts of one item

    # -- cameras ------------------------------------------------------------------------------
    def camera_map(self, camera: str) -> BeltMap:
        if camera not in self.cams:
            self.cams[camera] = _Camera(BeltMap.identity())
        return self.cams[camera].map

    def set_camera_active(self, camera: str, active: bool) -> None:
        """``False``: this camera's source is gone (its frames are no longer expected)."""
        if camera in self.cams:
            self.cams[camera].ended = not active

    def active_cameras(self) -> list[str]:
        """Cameras that delivered a frame within the last ``max_missed_frames`` frames."""
        if self._latest_t is None:
            return []
        window = (self.cfg.max_missed_frames + 1.5) * self.frame_dt()
        return [c for c, cam in self.cams.items()
                if not cam.ended and cam.last_t is not None and cam.last_t >= self._latest_t - window]

    @property
    def created(self) -> int:
        return self._next_id - 1

    def _camera(self, an: FrameAnalysis) -> _Camera:
        self.camera_map(an.camera)
        cam = self.cams[an.camera]
        sh, sw = an.mask.shape
        if cam.sw != sw or cam.sh != sh:
            cam.sw, cam.sh, cam.scale = sw, sh, an.scale
            cam.width, cam.height = int(round(sw * an.scale[0])), int(round(sh * an.scale[1]))
            cam.extent = cam.map.view_extent(cam.width, cam.height)
            cx, cy = cam.width / 2, cam.height / 2
            p = cam.map.to_image(cam.map.to_belt(np.array([[cx, cy]])) + np.array([[10.0, 0.0]]))[0]
            cam.upstream = 1 if p[0] >= cx else -1
        if cam.last_t is not None and an.t > cam.last_t:
            dt = an.t - cam.last_t
            cam.dt = dt if cam.dt is None else min(cam.dt * 1.05, dt) if dt > cam.dt else 0.9 * cam.dt + 0.1 * dt
        return cam

    # -- one frame ----------------------------------------------------------------------------
    def step(self, an: FrameAnalysis) -> TrackStep:
        cam = self._camera(an)
        cam.ended = False
        self._latest_t = an.t if self._latest_t is None else max(self._latest_t, an.t)
        shift = self._shift(cam, an)
        for tr in self.tracks.values():
            view = tr.views.get(an.camera)
            if view is not None:
                move_footprint(view, shift, cam.scale)
        priors = self._priors(an.camera, cam)
        sz = self._sizes(cam)
        pieces = segment(an.mask, priors, slack=_px(cam, self.cfg.slack),
                         min_new_px=FRAGMENT_FRAC * sz.min_area / sz.px, upstream=cam.upstream, near=sz.small[1],
                         small_px=sz.small[0])
        new = self._new_pieces(pieces, an, cam, sz)
        tracked, new, merged = self._joined([p for p in pieces if p.key is not None], new, an, cam, sz)
        seen: list[tuple[Track, CameraView]] = []
        crossed: list[Track] = []
        for piece in tracked:
            if piece.area * sz.px >= FRAGMENT_FRAC * sz.min_area:  # smaller: the track was not seen
                tr = self.tracks[piece.key]  # type: ignore[index]
                seen.append((tr, self._observe(tr, cam, an, piece, crossed)))
        ignored = self._take_new(new, tracked, an, cam, sz, seen, crossed)
        for prior in priors:
            if prior.claim_only:
                tr = self.tracks[prior.key]
                view = tr.views[an.camera]
                if view.x0 < cam.sw and view.x0 + view.footprint.shape[1] > 0:  # still in the picture
                    self._coast(tr, view, an, shift)
                    seen.append((tr, view))
        cam.last_t = an.t
        merged += self._dedupe(an.t) if len(self.cams) > 1 else []
        if merged:
            gone = {a for a, _ in merged}
            seen = [(t, v) for t, v in seen if t.id not in gone]
            crossed = [t for t in crossed if t.id not in gone]
        lost, closed = self._expire(an.t)
        return TrackStep(an.camera, an.t, seen, crossed, lost, closed, merged, ignored)

    def _sizes(self, cam: _Camera) -> _Sizes:
        px = cam.scale[0] * cam.scale[1]
        min_area = self.det_cfg.min_item_area(cam.width, cam.height)  # full-res px
        small = (self.cfg.entering_small * min_area / px, _px(cam, self.cfg.entering_near))
        return _Sizes(px, min_area, min_area / px, small,
                      _length(cam, self.cfg.split_min_radius), _length(cam, self.cfg.min_item_radius),
                      None if self.cfg.new_max_length is None else _length(cam, self.cfg.new_max_length))

    def _new_pieces(self, pieces: list[Piece], an: FrameAnalysis, cam: _Camera, sz: _Sizes) -> list[Piece]:
        """The new pieces (not entering), each cut into the items it holds: at necks, along the
        item cores of the mask and of the picture, across when longer than any item."""
        radius = sz.radius
        new = [q for p in pieces if p.key is None and not p.entering for q in self._cut_at_necks(p, an, cam, radius)]
        if an.core is not None and self.cfg.core_split_rect_gain is not None:
            new = [q for p in new for q in split_by_core(p, an.core, sz.min_px, radius, self.cfg.core_split_rect_gain)]
        if an.image is not None and self.cfg.fine_split_rect_gain is not None:
            new = [q for p in new for q in split_by_fine_core(p, an.image, cam.scale, sz.min_px, radius,
                                                              self.cfg.fine_split_rect_gain)]
        if sz.longest is not None:
            new = [q for p in new for q in cut_too_long(p, sz.longest, sz.min_px)]
        return new

    def _joined(self, tracked: list[Piece], new: list[Piece], an: FrameAnalysis, cam: _Camera, sz: _Sizes
                ) -> tuple[list[Piece], list[Piece], list[tuple[int, int]]]:
        """Tracked and new pieces after the fragments joined the items they belong to, pieces
        inside others were absorbed and parts of one item joined; with the tracks merged away."""
        box_join = ((_px(cam, self.cfg.fragment_join_near), self.cfg.fragment_join_max_rect_loss)
                    if self.cfg.fragment_join_near > 0 else None)
        item_join = ((_px(cam, self.cfg.item_join_near), self.cfg.item_join_min_gain)
                     if self.cfg.item_join_near > 0 else None)
        apart = self._apart(an, cam, sz.min_px)
        rules = JoinRules(_px(cam, self.cfg.join_gap), self.cfg.split_neck_ratio, sz.radius, sz.small, box_join,
                          item_join, sz.longest)
        new, grown = join_fragments(new, tracked, rules, apart)
        locked = self._locked()  # absorbing a track never locks or unlocks another
        tracked, new, merged = self._absorb_inside([grown.get(p.key, p) for p in tracked] + new,  # type: ignore[arg-type]
                                                   locked)
        if self.cfg.part_join_max_length is not None:
            tracked, parts = self._join_parts(tracked, cam, apart, locked)
            merged += parts
        return tracked, new, merged

    def _take_new(self, new: list[Piece], tracked: list[Piece], an: FrameAnalysis, cam: _Camera, sz: _Sizes,
                  seen: list[tuple[Track, CameraView]], crossed: list[Track]) -> list[tuple[BBox, Ignored]]:
        """Each new piece starts or joins a track (added to ``seen``), or is left out: returned
        with the reason (:meth:`_ignore`)."""
        occupied: np.ndarray | None = None

        def isolated(piece: Piece, gap: float) -> bool:  # no other region within gap (x frame height)
            nonlocal occupied
            if occupied is None:
                occupied = occupancy(an.mask.shape, tracked + new)
            return alone(piece, occupied, max(1, _px(cam, gap)))

        ignored: list[tuple[BBox, Ignored]] = []
        for piece in new:
            size = piece.area * sz.px / sz.min_area
            why = self._ignore(piece, an, size, sz, isolated)
            if why is not None:
                ignored.append((an.to_full(piece.box), why))
                continue
            tr = self._associate(an, cam, piece, {t.id for t, _ in seen})
            if size < 1 and not tr.views:  # born small: confirmed only once seen that often
                tr.min_hits = self.cfg.small_item_hits
            seen.append((tr, self._observe(tr, cam, an, piece, crossed)))
        return ignored

    def _ignore(self, piece: Piece, an: FrameAnalysis, size: float, sz: _Sizes,
                isolated: Callable[[Piece, float], bool]) -> Ignored | None:
        """Why a new region (``size`` x the min item area) is not an item, or None when it is one."""
        if piece.area * sz.px > self.det_cfg.max_area:
            return Ignored.TOO_BIG
        if size < 1:
            sa = self.cfg.small_item_area
            if sa is None or size < sa or an.contrast is None:
                return Ignored.FRAGMENT
            if mean_contrast(an.contrast, piece) < self.cfg.small_item_min_contrast:
                return Ignored.SMALL_FAINT
            if not isolated(piece, self.cfg.small_item_gap):
                return Ignored.SMALL_CROWDED  # a fragment of the item beside it
        elif an.contrast is not None:
            contrast = mean_contrast(an.contrast, piece)
            if self._faint(contrast, size):
                iso = self.cfg.isolated_min_contrast
                if iso is None or contrast < iso:
                    return Ignored.FAINT  # barely off the belt all over: a bright or dark patch of the belt
                if not isolated(piece, self.cfg.isolated_gap):
                    return Ignored.FAINT_CROWDED  # ... or a dark part of the item beside it
        if inscribed_radius(piece.mask) < sz.thinnest:
            return Ignored.THIN  # a thin streak (a shadow's rim, a blurred edge), thinner than any item
        return None

    def _faint(self, contrast: float, size: float) -> bool:
        """A region (``size`` x the min item area) is the belt: contrast below ``min_contrast`` and
        summed contrast below ``min_contrast_area`` x that (bigger and faint: a dark item)."""
        c = self.cfg
        return contrast < c.min_contrast and contrast * size < c.min_contrast * c.min_contrast_area

    def _locked(self) -> set[int]:
        """Tracks that crossed the line or were decided: never absorbed into another."""
        return {k for k, tr in self.tracks.items() if tr.t_cross is not None or tr.state == TrackState.DECIDED}

    def _absorb_inside(self, pieces: list[Piece], locked: set[int]
                       ) -> tuple[list[Piece], list[Piece], list[tuple[int, int]]]:
        """Join pieces lying inside a bigger piece's outline (one item that broke up, see
        :func:`join.absorb_inside`); a track whose piece joined another's is absorbed by
        it; ``locked`` (:meth:`_locked`) are never absorbed. Returns (tracked pieces, new pieces,
        (absorbed, kept) track ids)."""
        pieces, merged = absorb_inside(pieces, INSIDE_SHARE, locked)
        for drop, keep in merged:
            self._absorb(self.tracks[keep], self.tracks[drop])
        return [p for p in pieces if p.key is not None], [p for p in pieces if p.key is None], merged

    def _join_parts(self, tracked: list[Piece], cam: _Camera, apart: Callable[[Piece, Piece, int], bool] | None,
                    locked: set[int]) -> tuple[list[Piece], list[tuple[int, int]]]:
        """Two tracked pieces that were parts of one item (:func:`join.parts_of_one_item`) in
        ``part_join_frames`` frames become one track: the older absorbs the younger, unless either
        is ``locked`` (crossed the line or decided), or only one of them was first seen past it
        (neither ever changes, so such a pair is not looked at closer). A frame where the picture
        tells them ``apart`` does not count. Returns (tracked pieces, (absorbed, kept) track ids)."""
        reach = _px(cam, self.cfg.item_join_near)
        pairs = parts_of_one_item(tracked, reach, _length(cam, self.cfg.part_join_max_length),
                                  self.cfg.part_join_min_contact)
        self._together = {p: n for p, n in self._together.items() if p[0] in self.tracks and p[1] in self.tracks}
        if not pairs:
            return tracked, []
        by_key = {p.key: p for p in tracked}
        merged: list[tuple[int, int]] = []
        for a, b in pairs:
            keep, drop = min(a, b), max(a, b)
            if keep not in by_key or drop not in by_key:
                continue  # absorbed by an older track earlier in this loop
            if keep in locked or drop in locked or self.tracks[keep].born_past_line != self.tracks[drop].born_past_line:
                continue  # never let a track that will not be decided take over one that will
            if apart is not None and apart(by_key[a], by_key[b], reach):
                continue  # two items by the picture
            n = self._together[keep, drop] = self._together.get((keep, drop), 0) + 1
            if n < self.cfg.part_join_frames:
                continue
            by_key[keep] = union(by_key[keep], by_key.pop(drop), keep)
            self._absorb(self.tracks[keep], self.tracks[drop])
            merged.append((drop, keep))
        return list(by_key.values()), merged

    def _shift(self, cam: _Camera, an: FrameAnalysis) -> tuple[float, float]:
        """Image shift of this camera since its previous frame; updates the belt velocity.

        A live camera's queue drops frames when the pipeline falls behind, so the previous
        frame may be several frame periods back: the speed limit counts the periods that passed,
        and the fallback (the last good shift, kept per second) the time."""
        elapsed = an.t - cam.last_t if cam.last_t is not None and an.t > cam.last_t else 0.0
        sure = an.sure_shift(self.cfg.min_shift_confidence)
        if sure is not None and abs(sure[0]) <= self.cfg.max_speed_px * frame_periods(elapsed, cam.dt):
            shift = (sure[0], 0.0 if abs(sure[1]) < 0.5 * an.scale[1] else sure[1])
            if elapsed:
                cam.rate = (shift[0] / elapsed, shift[1] / elapsed)
        elif not elapsed:
            return 0.0, 0.0
        else:
            shift = (cam.rate[0] * elapsed, cam.rate[1] * elapsed)
        if elapsed:
            du, _ = cam.map.image_shift_to_belt(shift[0], shift[1], (cam.width / 2, cam.height / 2))
            v = du / elapsed
            self.velocity = v if abs(self.velocity) < 1e-9 else 0.5 * self.velocity + 0.5 * v
        return shift

    def _priors(self, camera: str, cam: _Camera) -> list[Prior]:
        out = []
        for tr in self.tracks.values():
            view = tr.views.get(camera)
            if view is None or tr.state == TrackState.CLOSED:
                continue
            out.append(Prior(tr.id, view.x0, view.y0, view.footprint, view.entering, claim_only=_coasting(tr)))
        return out

    def _associate(self, an: FrameAnalysis, cam: _Camera, piece: Piece, taken: set[int]) -> Track:
        """A new piece: another camera's track at that belt position, or a new track.

        Matched by centroids (a perspective view inflates boxes): each centroid must lie in
        the other's belt box; the closest such track wins."""
        bbox = an.to_full(piece.box)
        box = cam.map.box_to_belt(bbox)
        u, v = _centroid_belt(cam, an, piece)
        best, best_d = None, float("inf")
        for tr in self.tracks.values():
            if tr.id in taken or an.camera in tr.views or tr.state == TrackState.CLOSED:
                continue
            pb = tr.predicted_box(an.t, self.velocity)
            pu = tr.predict_u(an.t, self.velocity)
            if not (point_in_box((u, v), pb) and point_in_box((pu, tr.v), box)):
                continue
            d = (u - pu) ** 2 + (v - tr.v) ** 2
            if d < best_d:
                best, best_d = tr, d
        if best is not None:
            return best
        tr = Track(self._next_id, t_first=an.t, t_last=an.t, u=u, v=v, box=box)
        if self.line_u is not None and u >= self.line_u:
            tr.born_past_line = True
        self._next_id += 1
        self.tracks[tr.id] = tr
        return tr

    def _cut_at_necks(self, piece: Piece, an: FrameAnalysis, cam: _Camera, radius: float) -> list[Piece]:
        """A new piece cut at its necks (:func:`split_piece`), unless the full-resolution picture
        shows it is one item (:func:`bridged`)."""
        parts = split_piece(piece, self.cfg.split_neck_ratio, radius, self.cfg.split_min_rect_gain)
        share = self.cfg.neck_cut_max_bridge
        if len(parts) > 1 and share is not None and an.image is not None and bridged(piece, parts, an.image,
                                                                                     cam.scale, share):
            return [piece]
        return parts

    def _apart(self, an: FrameAnalysis, cam: _Camera, min_px: float) -> Callable[[Piece, Piece, int], bool] | None:
        """The test that vetoes a join by nearness (:func:`parted` over the gap that join would
        bridge, ``tracker.parted_min_core``), or None when it is off or the frame came without its
        picture."""
        min_core, image = self.cfg.parted_min_core, an.image
        if min_core is None or image is None:
            return None
        return lambda a, b, reach: parted(a, b, image, cam.scale, min_px, min_core, reach)

    def _observe(self, tr: Track, cam: _Camera, an: FrameAnalysis, piece: Piece, crossed: list[Track]) -> CameraView:
        sx, sy = an.scale
        bbox = an.to_full(piece.box)
        cxy = ((piece.centroid[0] + 0.5) * sx, (piece.centroid[1] + 0.5) * sy)
        x0, y0, x1, y1 = bbox
        truncated = x0 <= 0.5 or x1 >= cam.width - 0.5  # cut off by the picture's up/downstream edge
        at_side = y0 <= 0.5 or y1 >= cam.height - 0.5  # at the belt's edge: maybe cut off
        view = tr.views.get(an.camera)
        upstream_edge = x0 <= 0.5 if cam.upstream > 0 else x1 >= cam.width - 0.5
        entering = cam.upstream if upstream_edge and (view is None or view.entering) else 0
        if view is None:
            age = np.where(piece.mask > 0, 0, EMPTY).astype(np.uint8)
            view = CameraView(an.camera, piece.x0, piece.y0, age, (age != EMPTY).view(np.uint8), an.frame_seq,
                              an.t, bbox, cxy, piece.area * sx * sy, truncated, entering, hits=0, at_side=at_side)
            tr.views[an.camera] = view
        else:
            merge_footprint(view, piece, self.footprint_frames)
            view.seq, view.t, view.bbox, view.centroid = an.frame_seq, an.t, bbox, cxy
            view.area, view.truncated, view.entering = piece.area * sx * sy, truncated, entering
            view.at_side = at_side
        view.hits += 1
        u, v = _centroid_belt(cam, an, piece)
        if an.t > tr.t_last:
            tr.hits += 1
            tr.u_prev, tr.t_prev = tr.u, tr.t_last
        tr.u, tr.v, tr.t_last, tr.box = u, v, an.t, cam.map.box_to_belt(bbox)
        tr.lost = False
        if tr.state == TrackState.TENTATIVE and tr.hits >= max(self.cfg.min_hits, tr.min_hits):
            tr.state = TrackState.CONFIRMED
        self._check_cross(tr, bbox, crossed)
        return view

    def _coast(self, tr: Track, view: CameraView, an: FrameAnalysis, shift: tuple[float, float]) -> None:
        """A decided item past the line moves on with the belt: its footprint (moved already)
        still claims its pixels, so it is not found again as a new item, but nothing is
        measured any more (a third of the tracks in view, no longer segmented or updated)."""
        dx, dy = shift
        x0, y0, x1, y1 = view.bbox
        view.bbox = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
        view.centroid = (view.centroid[0] + dx, view.centroid[1] + dy)
        view.seq, view.t = an.frame_seq, an.t
        if an.t > tr.t_last:
            tr.box = tr.predicted_box(an.t, self.velocity)
            tr.u, tr.t_last = tr.predict_u(an.t, self.velocity), an.t
        tr.lost = False

    def _check_cross(self, tr: Track, bbox: BBox, crossed: list[Track]) -> None:
        if self.line_u is None or tr.t_cross is not None or tr.born_past_line or tr.u < self.line_u:
            return
        if tr.u_prev is None or tr.t_prev is None or tr.u_prev >= self.line_u or tr.u <= tr.u_prev:
            t_cross = tr.t_last
        else:
            frac = (self.line_u - tr.u_prev) / (tr.u - tr.u_prev)
            t_cross = tr.t_prev + frac * (tr.t_last - tr.t_prev)
        tr.t_cross, tr.cross_bbox, tr.cross_v = t_cross, bbox, tr.v
        crossed.append(tr)

    # -- one item, two tracks (several cameras) ---------------------------------------------
    def _dedupe(self, t: float) -> list[tuple[int, int]]:
        """With several cameras on the same stretch of belt, a real item is seen by all of
        them: a track seen by one camera only that lies mostly inside a track the other
        cameras see (in belt coordinates) is a piece of that item one camera split off."""
        active = set(self.active_cameras())
        live = [tr for tr in self.tracks.values() if tr.state != TrackState.CLOSED and not tr.lost]
        out: list[tuple[int, int]] = []
        for small in live:
            if len(small.views) != 1 or small.state == TrackState.DECIDED or small.id not in self.tracks:
                continue
            (cam_id,) = small.views
            box = small.predicted_box(t, self.velocity)
            area = small.views[cam_id].area
            for big in live:
                others = [(c, v) for c, v in big.views.items() if c != cam_id and c in active]
                if (big.id == small.id or big.id not in self.tracks or not others
                        or area > FRAGMENT_SHARE * max(v.area for _, v in others)
                        or max(box_overlap(box, self._view_box(c, v, t)) for c, v in others) < 0.5):
                    continue
                self._absorb(big, small)
                out.append((small.id, big.id))
                break
        return out

    def _view_box(self, cam_id: str, view: CameraView, t: float) -> tuple[float, float, float, float]:
        """Where a camera's last view of an item is on the belt now."""
        u0, v0, u1, v1 = self.cams[cam_id].map.box_to_belt(view.bbox)
        du = self.velocity * (t - view.t)
        return u0 + du, v0, u1 + du, v1

    def _absorb(self, keep: Track, drop: Track) -> None:
        for cam_id, view in drop.views.items():
            if cam_id not in keep.views or view.area > keep.views[cam_id].area:
                keep.views[cam_id] = view
        keep.t_first = min(keep.t_first, drop.t_first)
        drop.state = TrackState.CLOSED
        del self.tracks[drop.id]

    # -- loss and clean-up --------------------------------------------------------------------
    def frame_dt(self) -> float:
        dts = [c.dt for c in self.cams.values() if c.dt]
        return min(dts) if dts else 1.0 / 30.0

    def _expire(self, t: float) -> tuple[list[Track], list[Track]]:
        dt = self.frame_dt()
        max_gap = (self.cfg.max_missed_frames + 0.5) * dt
        lost, closed = [], []
        for tr in list(self.tracks.values()):
            self._drop_stale_views(tr, t, max_gap)
            gap = t - tr.t_last
            if gap <= max_gap:
                continue
            if tr.state == TrackState.TENTATIVE:  # never confirmed: noise, forget it
                tr.state = TrackState.CLOSED
                del self.tracks[tr.id]
                continue
            if not tr.lost:
                tr.lost = True
                if tr.decidable:
                    lost.append(tr)
            # keep a decided track (and its footprint) while it may still be in view, so
            # that the item re-appearing is not a new item
            if gap > 4 * max_gap or not self._in_view(tr.predicted_box(t, self.velocity)):
                tr.state = TrackState.CLOSED
                closed.append(self.tracks.pop(tr.id))
        return lost, closed

    def _drop_stale_views(self, tr: Track, t: float, max_gap: float) -> None:
        for cam_id in [c for c, v in tr.views.items() if t - v.t > max_gap and len(tr.views) > 1]:
            del tr.views[cam_id]

    def _in_view(self, box: tuple[float, float, float, float]) -> bool:
        active = set(self.active_cameras())
        for cam_id, cam in self.cams.items():
            if cam_id not in active or cam.width == 0:
                continue
            u0, v0, u1, v1 = cam.extent
            if box[2] > u0 and box[0] < u1 and box[3] > v0 and box[1] < v1:
                return True
        return False

    def mark_decided(self, tr: Track) -> None:
        if tr.state != TrackState.CLOSED:
            tr.state = TrackState.DECIDED

    def active_tracks(self) -> list[Track]:
        return list(self.tracks.values())


def frame_periods(elapsed: float, dt: float | None) -> int:
    """Whole frame periods in ``elapsed`` seconds (at least 1; 1 while the period is unknown)."""
    return max(1, int(round(elapsed / dt))) if dt else 1


def _coasting(tr: Track) -> bool:
    """Decided at the line: followed on by the belt's motion alone (:meth:`Tracker._coast`)."""
    return tr.state == TrackState.DECIDED and tr.t_cross is not None


def _length(cam: _Camera, frac: float) -> float:
    """A length given as a fraction of the frame height, in the detector's px."""
    return frac * cam.height / cam.scale[1]


def _px(cam: _Camera, frac: float) -> int:
    """The same, in whole px."""
    return int(round(_length(cam, frac)))


def _centroid_belt(cam: _Camera, an: FrameAnalysis, piece: Piece) -> tuple[float, float]:
    sx, sy = an.scale
    return cam.map.point_to_belt((piece.centroid[0] + 0.5) * sx, (piece.centroid[1] + 0.5) * sy)
