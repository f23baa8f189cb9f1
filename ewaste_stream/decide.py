"""Turn a decided track and its votes into a wire ``Decision`` (every field filled).

- ``y``: the centroid's cross-belt position at the line, 0..1 of the belt width the line
  camera sees; ``lane``/``actuator``: the first configured lane whose ``y_max`` covers it;
- ``deadline``: ``t_cross`` + actuator distance / belt speed (configured, or the tracker's
  estimate); ``late`` when the decision is made after it;
- ``model``: the classifier's name and weights sha256; ``config_sha``: the resolved config.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

from .config import Config
from .messages import Decision, Observation
from .track import Track
from .vote import vote


class DecisionFactory:
    """Builds decisions with consecutive ``seq`` numbers for one boot."""

    def __init__(self, config: Config, classifier, boot_id: str,  # noqa: ANN001
                 wall_clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.class_names = tuple(classifier.class_names)
        self.model = {"name": str(classifier.name), "sha256": str(classifier.sha256)}
        self.boot_id = boot_id
        self.config_sha = config.sha256()
        self.wall_clock = wall_clock
        self.belt_extent: tuple[float, float, float, float] | None = None  # line camera's view of the belt
        self.seq = 0
        self.rejects: Counter[str] = Counter()
        self.labels: Counter[str] = Counter()

    def make(self, tr: Track, obs: Sequence[Observation], t: float, velocity: float, cameras: int = 1) -> Decision:
        t_cross = tr.t_cross if tr.t_cross is not None else max(t, tr.t_first)
        t_cross = max(t_cross, tr.t_first)
        deadline = self.deadline(t_cross, velocity)
        late = deadline is not None and t > deadline + 1e-9
        res = vote(obs, self.class_names, self.config.vote, lost=tr.t_cross is None, late=late, cameras=cameras)
        v = tr.cross_v if tr.cross_v is not None else tr.v
        y = self.y_of(v)
        lane, actuator = self.lane_of(y)
        bbox = tr.cross_bbox
        if bbox is None and tr.views:
            bbox = max(tr.views.values(), key=lambda view: view.t).bbox
        if bbox is None:
            bbox = (0.0, 0.0, 1.0, 1.0)
        self.seq += 1
        self.labels[res.label] += 1
        if res.reject_reason is not None:
            self.rejects[res.reject_reason.value] += 1
        return Decision(
            line=self.config.line, boot_id=self.boot_id, seq=self.seq, item_id=tr.id, label=res.label,
            top_label=res.top_label, class_index=res.class_index, confidence=res.confidence, margin=res.margin,
            reject_reason=res.reject_reason, probs=res.probs, views=res.views, views_by_camera=res.views_by_camera,
            t_first=tr.t_first, t_cross=t_cross, t_decided=max(t, 0.0), y=y, bbox=tuple(bbox),  # type: ignore[arg-type]
            deadline=deadline, lane=lane, actuator=actuator, model=self.model, config_sha=self.config_sha,
            wall_decided=None if self.wall_clock is None else float(self.wall_clock()),
        )

    def deadline(self, t_cross: float, velocity: float) -> float | None:
        dec = self.config.decision
        speed = dec.belt_speed_mps * dec.px_per_m if dec.belt_speed_mps else abs(velocity)
        if speed < 1e-6:
            return None  # belt stopped: no deadline
        return t_cross + dec.actuator_distance_m * dec.px_per_m / speed

    def y_of(self, v: float) -> float:
        if self.belt_extent is None:
            return 0.0
        _, v0, _, v1 = self.belt_extent
        return min(1.0, max(0.0, (v - v0) / max(v1 - v0, 1e-9)))

    def lane_of(self, y: float) -> tuple[str | None, str | None]:
        for lane in self.config.decision.lanes:
            if y <= lane.y_max + 1e-12:
                return lane.name, lane.actuator
        return None, None
