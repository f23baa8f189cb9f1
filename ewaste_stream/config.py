"""Daemon / replay configuration: one pydantic schema, validated at load.

Precedence: defaults < YAML file < command-line flags. Unknown keys are rejected
(``extra="forbid"``), numbers are bounded, and errors name the YAML key (and line).
The shipped, fully commented default is ``config/default.yaml``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent
DEFAULT_CONFIG = REPO_ROOT / "config" / "default.yaml"
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    dir: Path = DEFAULT_MODEL_DIR  # model folder (weights + model.json)
    backend: Literal["auto", "onnx", "torch"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(2, ge=1, le=256)  # CPU inference threads


class BeltMapping(_Section):
    """Image -> belt coordinates. Either a 3x3 homography or offset + scale (default identity)."""

    homography: list[list[float]] | None = None
    offset: tuple[float, float] = (0.0, 0.0)  # belt = (image - offset) * scale
    scale: tuple[float, float] = (1.0, 1.0)


class CameraSection(_Section):
    id: str = Field("cam0", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    source: str = "0"  # camera index, rtsp://..., http://..., or a file path
    loop: bool = False  # file sources: start again at the end
    fps: float | None = Field(None, gt=0, le=1000)  # override when the source does not report it
    queue_size: int = Field(3, ge=1, le=64)  # per-camera frame queue (drop-oldest live)
    frozen_after_s: float = Field(5.0, gt=0)  # no frame for this long = source lost
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    frame_offset: int = 0  # frames this camera lags (+) or leads (-) the first camera
    mapping: BeltMapping = BeltMapping()


class DetectorSection(_Section):
    roi: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 as 0..1 fractions of the frame
    min_area: int = Field(600, ge=1)  # px
    max_area: int = Field(200_000, ge=1)  # px
    threshold: float = Field(30.0, gt=0)  # difference from the learned belt appearance
    downscale: int = Field(2, ge=1, le=8)  # work on a 1/N image for speed

    @model_validator(mode="after")
    def _areas(self) -> "DetectorSection":
        if self.max_area <= self.min_area:
            raise ValueError("max_area must be larger than min_area")
        return self


class TrackerSection(_Section):
    max_missed_frames: int = Field(5, ge=0, le=1000)  # frames a track survives without a detection
    min_hits: int = Field(2, ge=1)  # detections before a track is confirmed
    max_speed_px: float = Field(120.0, gt=0)  # per frame, along the belt


class BatchingSection(_Section):
    max_batch: int = Field(32, ge=1, le=1024)
    max_wait_ms: float = Field(20.0, ge=0)
    views_per_item: int = Field(4, ge=1, le=64)  # classify at most this many crops per item and camera


class VoteSection(_Section):
    min_confidence: float = Field(0.6, ge=0, le=1)
    min_margin: float = Field(0.2, ge=0, le=1)
    min_views: int = Field(1, ge=0)
    single_camera_min_confidence: float | None = Field(None, ge=0, le=1)  # stricter when others are down


class LaneSection(_Section):
    name: str
    y_max: float = Field(..., gt=0, le=1)  # lane covers y up to this fraction of belt width
    actuator: str | None = None


class DecisionSection(_Section):
    line_position: float = Field(0.75, gt=0, lt=1)  # fraction of frame width along the belt
    direction: Literal["left_to_right", "right_to_left"] = "left_to_right"
    actuator_distance_m: float = Field(0.5, ge=0)  # decision line -> actuator
    belt_speed_mps: float | None = Field(None, gt=0)  # None: estimated from the tracker
    px_per_m: float = Field(1000.0, gt=0)
    lanes: list[LaneSection] = Field(default_factory=lambda: [LaneSection(name="all", y_max=1.0, actuator="jet0")])


class PublishSection(_Section):
    endpoint: str | None = "tcp://127.0.0.1:5556"  # ZeroMQ PUB bind address; null disables
    hwm: int = Field(10_000, ge=1)
    heartbeat_s: float = Field(1.0, gt=0)
    decisions_log: Path | None = Path("runs/decisions.jsonl")
    fsync: Literal["always", "interval", "never"] = "interval"
    fsync_interval_s: float = Field(1.0, gt=0)
    curve_server_secret: Path | None = None  # CURVE: server secret key file
    curve_allowed_clients: Path | None = None  # CURVE: folder of allowed client public keys


class MetricsSection(_Section):
    listen: str | None = "127.0.0.1:9108"  # HOST:PORT for /healthz and /metrics; null disables


class LoggingSection(_Section):
    file: Path | None = Path("runs/ewaste-stream.log")
    rotation: str = "50 MB"
    retention: int = Field(10, ge=1)


class Config(_Section):
    line: str = Field("line1", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    model: ModelSection = ModelSection()
    cameras: list[CameraSection] = Field(default_factory=lambda: [CameraSection()], min_length=1)
    detector: DetectorSection = DetectorSection()
    tracker: TrackerSection = TrackerSection()
    batching: BatchingSection = BatchingSection()
    vote: VoteSection = VoteSection()
    decision: DecisionSection = DecisionSection()
    publish: PublishSection = PublishSection()
    metrics: MetricsSection = MetricsSection()
    logging: LoggingSection = LoggingSection()

    @model_validator(mode="after")
    def _unique_cameras(self) -> "Config":
        ids = [c.id for c in self.cameras]
        if len(set(ids)) != len(ids):
            raise ValueError(f"camera ids must be unique, got {ids}")
        return self

    def sha256(self) -> str:
        """Hash of the resolved config (goes on the wire as ``config_sha``)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class ConfigError(ValueError):
    """A configuration problem, with a message that names the file and key."""


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load and validate a YAML config (defaults when ``path`` is None)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of keys, got {type(data).__name__}")
    if overrides:
        data = {**data, **overrides}
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(x) for x in err["loc"]) or "(top level)"
            lines.append(f"  {key}: {err['msg']}")
        raise ConfigError(f"{path or 'defaults'}: invalid configuration\n" + "\n".join(lines)) from None
