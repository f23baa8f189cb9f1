"""Daemon / replay configuration: one pydantic schema, validated at load.

Precedence: defaults < YAML file < command-line flags. Unknown keys are rejected
(``extra="forbid"``), numbers are bounded, and errors name the YAML key (and line).
The shipped, fully commented default is ``config/default.yaml``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    # torch backend (docs/GPU.md): autocast dtype on CUDA (auto = fp16; the CPU always runs fp32)
    # ONNX backend: int8 runs the folder's model.int8.onnx (CPU); auto takes it on the CPU when present
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"
    compile: bool = False  # torch.compile at start-up for every batch bucket (never mid-stream)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = "default"
    channels_last: bool = False  # NHWC memory layout (helps convolutional nets on tensor cores)
    batch_buckets: list[int] | None = None  # compiled: pad batches to these sizes; None: 1, 2, 4 .. max_batch

    @field_validator("batch_buckets")
    @classmethod
    def _buckets(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or v != sorted(set(v)) or v[0] < 1 or v[-1] > 4096):
            raise ValueError(f"batch_buckets must be increasing sizes in 1..4096, e.g. [1, 8, 32], or null; got {v}")
        return v


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
    on_open_failure: Literal["exit", "retry"] = "exit"  # live: source cannot be opened at start

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        from .sources.spec import parse_source

        parse_source(v)  # raises ValueError naming the accepted forms
        return v

    @model_validator(mode="after")
    def _backoff(self) -> "CameraSection":
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self


class DetectorSection(_Section):
    """Sizes are in px of the full-resolution frame, or as fractions of its height (the belt's width
    in the picture), so one config works for 720p and 360p cameras alike."""

    roi: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 as 0..1 fractions of the frame
    min_area: int = Field(200, ge=1)  # px: regions smaller than this are never items
    min_area_frac: float = Field(0.0016, ge=0, lt=1)  # ... nor smaller than this fraction of the frame (fragments)
    max_area: int = Field(200_000, ge=1)  # px
    threshold: float = Field(10.0, gt=0)  # grey levels: min brightness difference from the learned belt
    chroma_threshold: float = Field(4.5, gt=0)  # grey levels: min colour difference (B-G or R-G vs the belt's)
    solid_chroma_threshold: float | None = Field(3.0, gt=0)  # ... down to this where they fill 3x3 patches; None = off
    noise_k: float = Field(2.5, gt=0)  # ... and at least this many times the belt's per-row spread
    smooth_ratio: float | None = Field(0.6, gt=0, lt=1)  # less detail across the motion than this x the belt's: an item; None = off
    busy_ratio: float | None = Field(2.0, gt=1)  # more detail across the motion than this x the belt's: an item; None = off
    enclosed_contrast: float | None = Field(1.2, gt=0)  # belt-like pixels enclosed by pixels this x the thresholds off the belt: an item; None = off
    shadow_ratio: float = Field(0.5, ge=0, le=1)  # darker but >= this x the belt's brightness, same colour: shadow
    shadow_width: float = Field(0.033, ge=0, le=0.5)  # widest shadow rim beside an item (x frame height)
    bridge_width: float = Field(0.0, ge=0, le=0.5)  # darker bands up to this wide inside an item are the item
    downscale: int | None = Field(None, ge=1, le=8)  # work on a 1/N image; None: about 180 px high

    def factor(self, height: int) -> int:
        """The downscale factor for frames ``height`` px high."""
        return self.downscale or max(1, int(round(height / 180.0)))

    def min_item_area(self, width: int, height: int) -> float:
        return max(float(self.min_area), self.min_area_frac * width * height)

    @model_validator(mode="after")
    def _areas(self) -> "DetectorSection":
        if self.max_area <= self.min_area:
            raise ValueError("max_area must be larger than min_area")
        return self


class TrackerSection(_Section):
    max_missed_frames: int = Field(5, ge=0, le=1000)  # frames a track survives without a detection
    min_hits: int = Field(2, ge=1)  # detections before a track is confirmed
    max_speed_px: float = Field(120.0, gt=0)  # per frame period, along the belt: faster measurements are ignored
    min_step: float | None = Field(0.045, gt=0, le=1)  # on a slower belt, frames are left out so that the belt moves
    # about this far (x frame height) between two frames run (the errors of a step add up per step); None: every frame
    max_skip_s: float = Field(0.04, ge=0, le=1)  # ... but never longer than this without a frame run (decision latency)
    slack: float = Field(0.011, ge=0, le=0.5)  # an item's pixels may stray this far (x frame height) from prediction
    min_shift_confidence: float = Field(0.02, ge=0, le=1)  # weaker belt-motion measurements: keep the last
    min_contrast: float = Field(1.6, ge=0)  # a new item differs from the belt by this x the threshold on average
    min_contrast_area: float = Field(3.0, ge=1)  # ... unless its size (x min item area) x contrast reaches this x min_contrast
    isolated_min_contrast: float | None = Field(1.4, ge=0)  # ... or this, with no other region within isolated_gap
    isolated_gap: float = Field(0.028, ge=0, le=0.1)  # x frame height
    small_item_area: float | None = Field(0.4, ge=0, le=1)  # a new region under the min item area but this big (x it;
    # None: off), at least small_item_min_contrast off the belt, with no other region within small_item_gap (x frame
    # height), is an item once seen in small_item_hits frames
    small_item_min_contrast: float = Field(1.6, ge=0)
    small_item_gap: float = Field(0.028, ge=0, le=0.1)
    small_item_hits: int = Field(12, ge=1)
    join_gap: float = Field(0.0, ge=0, le=0.1)  # a new fragment this close (x frame height) to a compact item joins it
    min_item_radius: float = Field(0.0126, ge=0, le=0.5)  # a new region thinner than this (half its thickness, x frame
    # height) is a streak (a shadow's rim, a blurred edge), not an item
    split_neck_ratio: float = Field(0.6, gt=0, le=1)  # a new region is cut where it narrows below this x item size
    split_min_radius: float = Field(0.014, gt=0, le=0.5)  # ... into parts this thick (x frame height)
    split_min_rect_gain: float | None = Field(0.0, ge=-1, le=1)  # ... if its parts are this much more box-like; None: any
    neck_cut_max_bridge: float | None = Field(0.5, gt=0, le=1)  # ... unless, on the full-resolution picture, this share
    # of each part's bright or coloured pixels runs on into another part (one item with a waist); None: off
    core_split_rect_gain: float | None = Field(0.02, ge=-1, le=1)  # cut a region along its bright/coloured cores when
    # its parts together are this much more box-like (neighbours joined by a dark gap where their shadows overlap); None: off
    fine_split_rect_gain: float | None = Field(0.02, ge=-1, le=1)  # ... the same on the full-resolution picture; None = off
    entering_near: float = Field(0.011, ge=0, le=0.1)  # a small new piece this close (x frame height) to an item still
    entering_small: float = Field(4.0, ge=0)  # coming in (smaller than this x the min item area) waits to join it; 0 = off
    parted_min_core: float | None = Field(0.3, gt=0, le=1)  # two item-sized pieces that each show this share of bright
    # or coloured pixels on the full-resolution picture, with no core running from one into the other, are two items:
    # a small piece does not join such a neighbour for being near it (join_gap / entering_near); None: off
    fragment_join_near: float = Field(0.022, ge=0, le=0.1)  # a small new piece this close (x frame height) to an item
    fragment_join_max_rect_loss: float = Field(0.08, ge=0, le=1)  # ... joins it if together they fill their rectangle at
    # most this much worse than the item alone (it completes the item's box); fragment_join_near 0 = off
    item_join_near: float = Field(0.017, ge=0, le=0.1)  # two new pieces (or a new and a tracked one) this close (x frame
    item_join_min_gain: float = Field(0.0, ge=-1, le=1)  # height) join, whatever their size, if together they fill
    # their rectangle at least this much better than the more box-like of the two alone; item_join_near 0 = off
    part_join_max_length: float | None = Field(0.28, gt=0, le=2)  # two tracked pieces within item_join_near that
    part_join_frames: int = Field(3, ge=1, le=1000)  # together are no longer than this (x frame height: the longest
    # item on the belt) and face each other along part_join_min_contact x the square root of the smaller one's area,
    # in this many frames, are parts of one item: one track absorbs the other; None = off
    part_join_min_contact: float = Field(0.8, ge=0)
    new_max_length: float | None = Field(0.37, gt=0, le=2)  # a new region longer than this (x frame height: above the
    # longest item, motion blur included) is two items or more: cut across where narrowest; no join makes a new or
    # growing piece longer; None = off

    @model_validator(mode="after")
    def _lengths(self) -> "TrackerSection":
        if (self.new_max_length is not None and self.part_join_max_length is not None
                and self.new_max_length <= self.part_join_max_length):
            raise ValueError(f"new_max_length ({self.new_max_length}) must be longer than part_join_max_length "
                             f"({self.part_join_max_length}, the longest item): a region that long is cut in two")
        return self


class BatchingSection(_Section):
    max_batch: int = Field(32, ge=1, le=1024)
    max_wait_ms: float = Field(20.0, ge=0)
    views_per_item: int = Field(2, ge=1, le=64)  # classify at most this many crops per item and camera
    stop_confidence: float | None = Field(0.9, gt=0, le=1)  # no more views of an item its views so far sort this surely
    guard_frames: float = Field(8.0, ge=0)  # the last view is taken this many frames of travel before the line
    crop_margin: float = Field(0.15, ge=0, le=1)  # square crop = longest box side x (1 + 2 margin)
    derotate: bool = False  # cut views along the footprint's min-area rectangle (see orient.py)
    # other tracks' pixels in a view's square crop, grown by this (x frame height), are painted the belt's colour
    # (batching.paint_others); None: off (also off with derotate)
    mask_neighbours: float | None = Field(0.0056, ge=0, le=0.1)
    max_inflight: int = Field(4, ge=1, le=64)  # batches queued for the classifier thread before waiting
    # a view whose top probability is under this is classified mirrored too, each way in flips, and all averaged
    # (batching.flip_unsure: ~43 % of the views; models/README.md "Mirrored second look"); None: off
    flip_below: float | None = Field(0.9, gt=0, le=1)
    # the mirrors of that second look (batching.MIRRORS), averaged with the view: each one ~5 % more CPU
    flips: tuple[Literal["horizontal", "vertical", "both"], ...] = Field(("horizontal", "vertical"), min_length=1)

    @field_validator("flips")
    @classmethod
    def _distinct_flips(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"each mirror once: {list(v)}")
        return v


class VoteSection(_Section):
    min_confidence: float = Field(0.6, ge=0, le=1)
    min_margin: float = Field(0.2, ge=0, le=1)
    min_views: int = Field(1, ge=0)
    single_camera_min_confidence: float | None = Field(None, ge=0, le=1)  # stricter when others are down
    lost_min_confidence: float = Field(0.85, ge=0, le=1)  # a track lost before the line needs this to be sorted
    camera_weights: dict[str, float] = Field(default_factory=dict)  # per-camera view weight (default 1)
    camera_fusion: Literal["mean", "product"] = "mean"  # how cameras' votes combine (see vote.py)
    # product fusion: the confidence threshold of an item that two or more cameras voted on (agreeing
    # cameras multiply into higher confidences than one camera's); None: min_confidence
    fused_min_confidence: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _weights(self) -> "VoteSection":
        bad = {k: v for k, v in self.camera_weights.items() if not (0 < v <= 10)}
        if bad:
            raise ValueError(f"camera_weights must be in (0, 10], got {bad}")
        return self


class LaneSection(_Section):
    name: str
    y_max: float = Field(..., gt=0, le=1)  # lane covers y up to this fraction of belt width
    actuator: str | None = None


class DecisionSection(_Section):
    line_position: float = Field(0.75, gt=0, lt=1)  # fraction of frame width along the belt
    line_camera: str | None = None  # camera whose picture line_position refers to (default: the first)
    line_x: float | None = None  # or: the line's position along the belt in belt coordinates (overrides the two above)
    direction: Literal["left_to_right", "right_to_left"] = "left_to_right"
    actuator_distance_m: float = Field(0.5, ge=0)  # decision line -> actuator
    belt_speed_mps: float | None = Field(None, gt=0)  # None: estimated from the tracker
    px_per_m: float = Field(1000.0, gt=0)
    lanes: list[LaneSection] = Field(default_factory=lambda: [LaneSection(name="all", y_max=1.0, actuator="jet0")],
                                     min_length=1)

    @model_validator(mode="after")
    def _lanes(self) -> "DecisionSection":
        ys = [lane.y_max for lane in self.lanes]
        if any(b <= a for a, b in zip(ys, ys[1:])) or ys[-1] != 1.0:
            raise ValueError(f"lanes: y_max must increase from lane to lane and the last must be 1.0 "
                             f"(every item needs a lane), got {ys}")
        names = [lane.name for lane in self.lanes]
        if len(set(names)) != len(names):
            raise ValueError(f"lanes: names must be unique, got {names}")
        return self


class PublishSection(_Section):
    endpoint: str | None = "tcp://127.0.0.1:5556"  # ZeroMQ PUB bind address; null disables
    hwm: int = Field(10_000, ge=1)
    heartbeat_s: float = Field(1.0, gt=0)
    decisions_log: Path | None = Path("runs/decisions.jsonl")
    fsync: Literal["always", "interval", "never"] = "interval"
    fsync_interval_s: float = Field(1.0, gt=0)
    curve_server_secret: Path | None = None  # CURVE: server secret key file
    curve_allowed_clients: Path | None = None  # CURVE: folder of allowed client public keys
    queue_size: int = Field(100_000, ge=1)  # decisions waiting for the publisher thread
    drain_timeout_s: float = Field(5.0, ge=0)  # shutdown: wait this long for queued decisions
    decisions_log_max_mb: float = Field(256.0, gt=0)  # rotate the JSONL log at this size
    decisions_log_keep: int = Field(20, ge=1, le=10_000)  # rotated files kept (PATH.1 newest)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"(tcp://[^\s:]+:(\d+|\*)|ipc://\S+|inproc://\S+)", v):
            raise ValueError(f"{v!r} is not a ZeroMQ bind address; use tcp://HOST:PORT (e.g. tcp://0.0.0.0:5556), "
                             "ipc://PATH or null to disable")
        return v

    @model_validator(mode="after")
    def _curve(self) -> "PublishSection":
        if (self.curve_server_secret is None) != (self.curve_allowed_clients is None):
            raise ValueError("CURVE needs both curve_server_secret and curve_allowed_clients (or neither)")
        return self


class MetricsSection(_Section):
    listen: str | None = "127.0.0.1:9108"  # HOST:PORT for /healthz and /metrics; null disables
    snapshot: bool = True  # also /snapshot.jpg?camera=ID: the latest frame with the pipeline's boxes
    # health is "degraded" while a camera's queue dropped at least this fraction of its frames over the
    # last 10 s (the pipeline is behind; a decision published after its deadline does the same); null: off
    degraded_dropped_fraction: float | None = Field(0.25, gt=0, le=1)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            host, _, port = v.rpartition(":")
            if not host or not port.isdigit() or int(port) > 65535:
                raise ValueError(f"{v!r} is not HOST:PORT (e.g. 127.0.0.1:9108); null disables the endpoint")
        return v


class LoggingSection(_Section):
    file: Path | None = Path("runs/ewaste-stream.log")
    rotation: str = "50 MB"
    retention: int = Field(10, ge=1)
    summary_every_s: float | None = Field(60.0, gt=0)  # live: one summary line per period (None: off)


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


@dataclass(frozen=True)
class ConfigProblem:
    key: str  # dotted path, e.g. "cameras[0].queue_size"
    message: str
    line: int | None = None  # 1-based YAML line, None when the value did not come from the file
    origin: str = "file"  # "file", "command line" or "default"

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ("(command line) " if self.origin == "command line" else "")
        return f"{where}{self.key}: {self.message}"


class ConfigError(ValueError):
    """A configuration problem, with a message that names the file, key and YAML line."""

    def __init__(self, message: str, problems: list[ConfigProblem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


def _key_str(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _yaml_lines(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map every key path in a composed YAML tree to its 1-based line; raise on duplicate keys."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for k, v in node.value:
            key = k.value
            if key in seen:
                raise ConfigError(f"line {k.start_mark.line + 1}: {_key_str(path + (key,))}: key given twice; "
                                  "keep one (YAML would silently use the last)")
            seen.add(key)
            out[path + (key,)] = k.start_mark.line + 1
            _yaml_lines(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _yaml_lines(v, path + (i,), out)
    return out


def _fields_at(loc: tuple) -> list[str]:
    """Field names of the model at ``loc`` (for "did you mean")."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        for arg in (ann, *getattr(ann, "__args__", ())):
            inner = (getattr(arg, "__args__", None) or (arg,))[0]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                model = inner
                break
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                model = arg
                break
        else:
            return []
    return list(getattr(model, "model_fields", {}))


def _problem(err: dict, lines: dict[tuple, int], overridden: set[tuple]) -> ConfigProblem:
    loc = tuple(x for x in err["loc"] if isinstance(x, int) or not str(x).startswith(("function-", "list[", "tuple[")))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc[:-1]), n=1, cutoff=0.6)
        msg = "unknown key" + (f"; did you mean {close[0]!r}?" if close else
                               f"; allowed here: {', '.join(_fields_at(loc[:-1]))}")
    elif err["type"] != "missing" and not isinstance(err.get("input"), (dict, list)) \
            and repr(err.get("input")) not in msg:
        msg += f" (got {err.get('input')!r})"
    if any(loc[:n] in overridden for n in range(1, len(loc) + 1)):
        return ConfigProblem(_key_str(loc), msg, None, "command line")
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
    return ConfigProblem(_key_str(loc), msg, line, "file" if line else "default")


def _read_yaml(p: Path) -> tuple[dict[str, Any], dict[tuple, int]]:
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found (start from config/default.yaml)") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p}: not valid YAML: {where}{problem} (check indentation and `key: value` syntax)") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys (line: ..., cameras: ...), "
                          f"got {type(data).__name__}")
    try:
        return data, _yaml_lines(node)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def _merge(base: dict[str, Any], over: dict[str, Any], path: tuple = (), seen: set | None = None) -> dict[str, Any]:
    """Deep-merge ``over`` into ``base`` (lists and scalars replace); record overridden paths."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, path + (k,), seen)
        else:
            out[k] = v
            if seen is not None:
                seen.add(path + (k,))
    return out


def parse_setting(text: str) -> tuple[tuple[str, ...], Any]:
    """``SECTION.KEY=VALUE`` (or ``KEY=VALUE`` at the top level) from a command line: the key path
    and the value, read as JSON where it parses (``0.5``, ``null``, ``["horizontal"]``), else as
    the bare string (``fp32``). ValueError when the text is not of that form."""
    key, eq, value = text.partition("=")
    path = tuple(key.strip().split("."))
    if not eq or not all(path) or len(path) > 2:
        raise ValueError(f"{text!r}: give SECTION.KEY=VALUE, e.g. vote.min_confidence=0.7")
    try:
        return path, json.loads(value)
    except json.JSONDecodeError:
        return path, value


def setting_arg(text: str) -> str:
    """argparse ``type`` for ``--set``: the text, once :func:`parse_setting` accepts its form."""
    import argparse

    try:
        parse_setting(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def settings_overrides(texts: list[str]) -> dict[str, Any]:
    """The nested ``overrides`` of :func:`load_config` for command-line settings (:func:`parse_setting`);
    a later setting of the same key wins."""
    out: dict[str, Any] = {}
    for text in texts:
        path, value = parse_setting(text)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load and validate a YAML config (defaults when ``path`` is None).

    ``overrides`` is a nested dict (command-line flags) merged over the file. Errors raise
    ``ConfigError`` naming the file, each bad key and its YAML line, with "did you mean"."""
    data: dict[str, Any] = {}
    lines: dict[tuple, int] = {}
    if path is not None:
        data, lines = _read_yaml(Path(path))
    overridden: set[tuple] = set()
    if overrides:
        data = _merge(data, overrides, (), overridden)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = sorted((_problem(e, lines, overridden) for e in exc.errors()), key=lambda p: p.line or 1 << 30)
        body = "\n".join(f"  {p}" for p in problems)
        n = len(problems)
        raise ConfigError(f"{path or 'defaults'}: invalid configuration ({n} problem{'s' * (n > 1)})\n{body}",
                          problems) from None


def yaml_key_lines(path: str | Path) -> dict[tuple, int]:
    """{key path: 1-based line} for a YAML file (for messages about a loaded config)."""
    return _read_yaml(Path(path))[1]


def check_paths(config: Config, lines: dict[tuple, int] | None = None) -> list[ConfigProblem]:
    """Checks that need the file system (``check-config`` and ``run``; not the schema):
    the model folder, file sources and CURVE key files must exist, and the decision log and
    the log file must be files this user can write or create."""
    out: list[ConfigProblem] = []
    found = _check_path_values(config)
    for key, msg in found:
        loc = tuple(int(x) if x.isdigit() else x for x in re.split(r"[.\[\]]+", key) if x)
        out.append(ConfigProblem(key, msg, (lines or {}).get(loc)))
    return out


def _check_path_values(config: Config) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    mdir = config.model.dir
    if not mdir.is_dir():
        out.append(("model.dir", f"model folder {str(mdir)!r} does not exist; set model.dir (or --model DIR)"))
    elif not (mdir / "model.json").is_file():
        out.append(("model.dir", f"{str(mdir)!r} has no model.json; point it at a model folder"))
    from .sources.spec import parse_source

    for i, cam in enumerate(config.cameras):
        spec = parse_source(cam.source)
        if spec.kind == "file" and cam.on_open_failure == "exit" and not Path(spec.target).is_file():
            out.append((f"cameras[{i}].source", f"video file {spec.target!r} does not exist"))
    pub = config.publish
    if pub.curve_server_secret is not None and not pub.curve_server_secret.is_file():
        out.append(("publish.curve_server_secret", f"{str(pub.curve_server_secret)!r} does not exist; "
                    "create keys with `ewaste-stream keys --out DIR --name server`"))
    if pub.curve_allowed_clients is not None and not pub.curve_allowed_clients.is_dir():
        out.append(("publish.curve_allowed_clients", f"folder {str(pub.curve_allowed_clients)!r} does not exist"))
    for key, path, what in (("publish.decisions_log", pub.decisions_log, "decisions would not be logged for catch-up"),
                            ("logging.file", config.logging.file, "the daemon's log would be lost")):
        problem = None if path is None else _write_problem(path)
        if problem is not None:
            out.append((key, f"{problem}: {what}; give a writable path (or null)"))
    return out


def _write_problem(path: Path) -> str | None:
    """Why this user cannot write ``path`` (a file, made with its folders when missing), or None."""
    import os

    if path.exists():
        if path.is_dir():
            return f"{str(path)!r} is a folder"
        return None if os.access(path, os.W_OK) else f"{str(path)!r} is not writable by this user"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{str(parent)!r} is a file, so {str(path)!r} cannot be made under it"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{str(path)!r} cannot be made: {str(parent)!r} is not writable by this user"
    return None
