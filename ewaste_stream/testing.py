"""Helpers for tests and tools: hand-made decisions and a stub pipeline.

Kept in the package (not under tests/) so unit tests, integration tests and ``tools/``
share one definition instead of copy-pasting it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Callable

from .messages import REJECT_LABEL, Decision, Frame, RejectReason, StatusEvent


def load_tool(name: str) -> ModuleType:
    """The module of ``tools/<name>.py`` in this source checkout (tools are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_decision(seq: int, boot_id: str = "boot-a", line: str = "line1", label: str = "Mouse",
                  t: float | None = None, y: float = 0.5) -> Decision:
    """A valid schema-1 decision; ``label="reject"`` gives a low-confidence reject."""
    t = float(seq) if t is None else float(t)
    rejected = label == REJECT_LABEL
    return Decision(
        line=line, boot_id=boot_id, seq=seq, item_id=seq, label=label,
        top_label="Mouse" if rejected else label, class_index=-1 if rejected else 4,
        confidence=0.4 if rejected else 0.9, margin=0.1 if rejected else 0.8,
        reject_reason=RejectReason.LOW_CONFIDENCE if rejected else None,
        probs={"Mouse": 0.9, "PCB": 0.1}, views=2, views_by_camera={"cam0": 2},
        t_first=t, t_cross=t + 0.5, t_decided=t + 0.52, y=y, bbox=(10.0, 20.0, 50.0, 60.0),
        deadline=t + 1.0, lane="all", actuator="jet0", model={"name": "stub", "sha256": "0" * 64},
        config_sha="cafe",
    )


class StubPipeline:
    """Pipeline stand-in with the real constructor/method shape: one decision every
    ``every`` frames (seq 1, 2, ...), ``flush`` decides one pending item if any."""

    def __init__(self, config, classifier, boot_id: str, on_decision: Callable[[Decision], None],  # noqa: ANN001
                 on_status: Callable[[StatusEvent], None] | None = None, every: int = 2) -> None:
        self.line = config.line
        self.boot_id = boot_id
        self.on_decision = on_decision
        self.every = every
        self.frames = 0
        self.analysed = 0
        self.mismatched = 0
        self.seq = 0
        self._pending = False

    def _decide(self, t: float) -> Decision:
        self.seq += 1
        d = make_decision(self.seq, self.boot_id, self.line, t=t)
        self.on_decision(d)
        return d

    def analyse(self, frame: Frame, small=None):  # noqa: ANN001, ANN201
        """Stands for the detector's step: a token naming the frame (``process`` checks it)."""
        self.analysed += 1
        return ("analysis", frame.camera, frame.seq)

    def process(self, frame: Frame, small=None, analysis=None) -> list[Decision]:  # noqa: ANN001
        if analysis is not None and analysis != ("analysis", frame.camera, frame.seq):
            self.mismatched += 1  # a frame handed over with another frame's analysis
        self.frames += 1
        self._pending = True
        if self.frames % self.every == 0:
            self._pending = False
            return [self._decide(frame.t)]
        return []

    def flush(self, t: float) -> list[Decision]:
        if self._pending:
            self._pending = False
            return [self._decide(t)]
        return []

    def stats(self) -> dict:
        return {"frames": self.frames, "analysed": self.analysed, "mismatched": self.mismatched, "decisions": self.seq}


class StubClassifier:
    """Classifier stand-in: uniform-ish probabilities favouring class 0, no model needed."""

    def __init__(self, class_names: tuple[str, ...] = ("Mouse", "PCB")) -> None:
        self._names = tuple(class_names)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def name(self) -> str:
        return "stub"

    @property
    def sha256(self) -> str:
        return "0" * 64

    def predict(self, crops):  # noqa: ANN001, ANN201
        import numpy as np

        out = np.full((len(crops), len(self._names)), 0.1 / max(1, len(self._names) - 1), np.float32)
        out[:, 0] = 0.9
        return out


def write_test_video(path, frames: int = 10, fps: float = 50.0, size: tuple[int, int] = (64, 48)):  # noqa: ANN001, ANN201
    """A tiny mp4v video (moving bright square on a dark belt); returns the path."""
    import cv2
    import numpy as np

    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(frames):
        img = np.full((h, w, 3), 30, np.uint8)
        x = (i * 5) % (w - 10)
        img[h // 3: h // 3 + 10, x: x + 10] = 220
        vw.write(img)
    vw.release()
    return path
