"""PNG figures with matplotlib's object API: no pyplot, no global backend switch, nothing to
close, so plotting is safe inside a daemon, a training run or a test. Used by training's and
the analysis report's charts."""

from __future__ import annotations

from pathlib import Path


def new_figure(w: float = 6.4, h: float = 4.0):
    """A figure with constrained layout (no ``tight_layout`` call needed)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def save_png(fig, path: str | Path, dpi: float | None = None) -> Path:
    """Write ``fig`` as PNG, creating the folder; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, format="png", dpi=dpi)
    return p
