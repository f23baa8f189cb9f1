"""PNG plots: confusion matrices (raw + row-normalised) and the training curve."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..plotting import new_figure, save_png


def confusion_png(cm: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    raw = np.asarray(cm, dtype=np.int64)
    rows = raw.sum(axis=1, keepdims=True)
    norm = np.divide(raw, rows, out=np.zeros(raw.shape), where=rows > 0)
    fig = new_figure(15, 6.5)
    axes = fig.subplots(1, 2)
    for ax, data, fmt, sub in ((axes[0], raw, "d", "counts"), (axes[1], norm, ".2f", "row-normalised")):
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title} ({sub})")
        for i in range(len(class_names)):
            for j in range(len(class_names)):
                if data[i, j]:
                    ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    return save_png(fig, path, dpi=90)


def training_curve_png(history: Sequence[dict], path: str | Path) -> Path:
    """Loss, train/val accuracies and learning rate per epoch."""
    ep = [h["epoch"] for h in history]
    fig = new_figure(15, 4)
    a1, a2, a3 = fig.subplots(1, 3)
    a1.plot(ep, [h["loss"] for h in history], marker="o")
    a1.set_title("train loss")
    for key, label in (("train_acc", "train"), ("val_photo_acc", "val photo (leak-free)"),
                       ("val_belt_acc", "val belt crops (leak-free)")):
        vals = [h.get(key) for h in history]
        if any(v is not None for v in vals):
            a2.plot(ep, vals, marker="o", label=label)
    a2.set_title("accuracy")
    a2.legend()
    a3.plot(ep, [h["lr"] for h in history], marker="o")
    a3.set_yscale("log")
    a3.set_title("head learning rate (end of epoch)")
    for a in (a1, a2, a3):
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    return save_png(fig, path, dpi=90)
