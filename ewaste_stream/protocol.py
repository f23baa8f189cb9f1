"""The wire format (schema 1): the single source of truth for what goes to a PLC bridge.

ZeroMQ PUB, multipart ``[topic, payload]``; topics ``ewaste/<line>/decision`` and
``ewaste/<line>/heartbeat``; payload is one UTF-8 JSON object. The JSONL decision log holds
the same objects, one a line. Never pickle. See docs/WIRE.md for the field table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from .messages import Decision, RejectReason

SCHEMA = 1
DECISION_FIELDS = (
    "schema", "line", "boot_id", "seq", "item_id", "label", "top_label", "class_index",
    "confidence", "margin", "reject_reason", "probs", "views", "views_by_camera",
    "t_first", "t_cross", "t_decided", "y", "bbox", "deadline", "lane", "actuator",
    "model", "config_sha",
)
HEARTBEAT_FIELDS = ("schema", "line", "boot_id", "last_seq", "t", "status", "fps", "queue_depths")


class ProtocolError(ValueError):
    """A payload that is not a valid schema-1 message."""


def decision_topic(line: str) -> bytes:
    return f"ewaste/{line}/decision".encode()


def heartbeat_topic(line: str) -> bytes:
    return f"ewaste/{line}/heartbeat".encode()


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(float(x), nd)


def decision_to_dict(d: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "line": d.line,
        "boot_id": d.boot_id,
        "seq": d.seq,
        "item_id": d.item_id,
        "label": d.label,
        "top_label": d.top_label,
        "class_index": d.class_index,
        "confidence": _r(d.confidence),
        "margin": _r(d.margin),
        "reject_reason": d.reject_reason.value if d.reject_reason else None,
        "probs": {k: _r(v) for k, v in d.probs.items()},
        "views": d.views,
        "views_by_camera": dict(d.views_by_camera),
        "t_first": _r(d.t_first),
        "t_cross": _r(d.t_cross),
        "t_decided": _r(d.t_decided),
        "y": _r(d.y),
        "bbox": [_r(v, 2) for v in d.bbox],
        "deadline": _r(d.deadline),
        "lane": d.lane,
        "actuator": d.actuator,
        "model": dict(d.model),
        "config_sha": d.config_sha,
    }
    if d.wall_decided is not None:
        out["wall_decided"] = _r(d.wall_decided)
    return out


def encode_decision(d: Decision) -> bytes:
    """Decision -> UTF-8 JSON bytes (no newline)."""
    return json.dumps(decision_to_dict(d), separators=(",", ":"), allow_nan=False).encode()


def _load(payload: bytes | str) -> dict[str, Any]:
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"payload is not UTF-8 JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("payload must be a JSON object")
    if obj.get("schema") != SCHEMA:
        raise ProtocolError(f"unsupported schema {obj.get('schema')!r}; this reader knows schema {SCHEMA}")
    return obj


def dict_to_decision(obj: Mapping[str, Any]) -> Decision:
    missing = [k for k in DECISION_FIELDS if k not in obj]
    if missing:
        raise ProtocolError(f"decision is missing fields: {', '.join(missing)}")
    try:
        return Decision(
            line=obj["line"], boot_id=obj["boot_id"], seq=int(obj["seq"]), item_id=int(obj["item_id"]),
            label=obj["label"], top_label=obj["top_label"], class_index=int(obj["class_index"]),
            confidence=float(obj["confidence"]), margin=float(obj["margin"]),
            reject_reason=RejectReason(obj["reject_reason"]) if obj["reject_reason"] else None,
            probs={str(k): float(v) for k, v in obj["probs"].items()},
            views=int(obj["views"]), views_by_camera={str(k): int(v) for k, v in obj["views_by_camera"].items()},
            t_first=float(obj["t_first"]), t_cross=float(obj["t_cross"]), t_decided=float(obj["t_decided"]),
            y=float(obj["y"]), bbox=tuple(float(v) for v in obj["bbox"]),  # type: ignore[arg-type]
            deadline=None if obj["deadline"] is None else float(obj["deadline"]),
            lane=obj["lane"], actuator=obj["actuator"], model=dict(obj["model"]), config_sha=obj["config_sha"],
            wall_decided=obj.get("wall_decided"),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"invalid decision (seq={obj.get('seq')!r}): {exc}") from exc


def decode_decision(payload: bytes | str) -> Decision:
    return dict_to_decision(_load(payload))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    line: str
    boot_id: str
    last_seq: int  # seq of the last decision published (0 before the first)
    t: float  # stream seconds
    status: str  # "ok" | "degraded" | "stopping"
    fps: Mapping[str, float] = field(default_factory=dict)  # per camera
    queue_depths: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.last_seq < 0:
            raise ValueError("Heartbeat: last_seq must be >= 0")
        if not math.isfinite(self.t):
            raise ValueError("Heartbeat: t must be finite")


def encode_heartbeat(h: Heartbeat) -> bytes:
    obj = {
        "schema": SCHEMA, "line": h.line, "boot_id": h.boot_id, "last_seq": h.last_seq,
        "t": _r(h.t), "status": h.status, "fps": {k: _r(v, 2) for k, v in h.fps.items()},
        "queue_depths": dict(h.queue_depths),
    }
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def decode_heartbeat(payload: bytes | str) -> Heartbeat:
    obj = _load(payload)
    missing = [k for k in HEARTBEAT_FIELDS if k not in obj]
    if missing:
        raise ProtocolError(f"heartbeat is missing fields: {', '.join(missing)}")
    try:
        return Heartbeat(line=obj["line"], boot_id=obj["boot_id"], last_seq=int(obj["last_seq"]), t=float(obj["t"]),
                         status=str(obj["status"]), fps=dict(obj["fps"]), queue_depths=dict(obj["queue_depths"]))
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"invalid heartbeat: {exc}") from exc
