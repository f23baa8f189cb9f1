"""Charts for the analysis reports, as PNG files (matplotlib's object API: no pyplot, no
global backend, safe in a daemon or a test run)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..plotting import new_figure as _figure
from ..plotting import save_png as _save


def histogram_by_outcome(values: np.ndarray, correct: np.ndarray, title: str, xlabel: str, path: Path,
                         names: tuple[str, str, str] = ("correct", "wrong", "images")) -> Path:
    """Overlaid histograms (0..1) of a score for two groups, ``correct`` True vs False;
    ``names``: the two groups and what is counted."""
    fig = _figure()
    ax = fig.add_subplot()
    bins = np.linspace(0.0, 1.0, 26)
    ax.hist(values[correct], bins=bins, alpha=0.65, label=f"{names[0]} ({int(correct.sum())})", color="tab:green")
    ax.hist(values[~correct], bins=bins, alpha=0.75, label=f"{names[1]} ({int((~correct).sum())})", color="tab:red")
    ax.set(title=title, xlabel=xlabel, ylabel=names[2])
    ax.set_yscale("log" if correct.sum() > 20 * max((~correct).sum(), 1) else "linear")
    ax.legend()
    return _save(fig, path)


def risk_coverage_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], marks: dict[str, tuple[float, float]],
                       target: float, path: Path) -> Path:
    """Accepted accuracy vs coverage per score; ``marks`` = score -> (coverage, accuracy)."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, (cov, acc) in curves.items():
        line, = ax.step(cov, acc, where="post", label=name)
        if name in marks:
            ax.plot(*marks[name], "o", color=line.get_color(), ms=8)
    ax.axhline(target, ls="--", color="grey", lw=1, label=f"target {target:.0%}")
    ax.set(title="Risk-coverage: accuracy among accepted vs fraction accepted",
           xlabel="coverage (fraction accepted)", ylabel="accuracy among accepted", xlim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return _save(fig, path)


def embedding_plot(xy: np.ndarray, labels: np.ndarray, wrong: np.ndarray, class_names: Sequence[str],
                   title: str, path: Path) -> Path:
    """2-D embedding, coloured by true class; misclassified points drawn as black-edged X."""
    from matplotlib import colormaps

    fig = _figure(7.5, 5.5)
    ax = fig.add_subplot()
    cmap = colormaps["tab10" if len(class_names) <= 10 else "tab20"]
    for k, name in enumerate(class_names):
        m = labels == k
        if m.any():
            ax.scatter(xy[m & ~wrong, 0], xy[m & ~wrong, 1], s=14, color=cmap(k % cmap.N), label=name, alpha=0.8)
            ax.scatter(xy[m & wrong, 0], xy[m & wrong, 1], s=70, color=cmap(k % cmap.N), marker="X",
                       edgecolors="black", linewidths=1.0)
    ax.scatter([], [], s=70, marker="X", color="white", edgecolors="black", label="misclassified")
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def bar_chart(counts: dict[str, int], title: str, path: Path, ylabel: str = "count") -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    names = list(counts)
    ax.bar(range(len(names)), [counts[n] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    ax.set(title=title, ylabel=ylabel)
    return _save(fig, path)


def time_series(t: np.ndarray, y: np.ndarray, title: str, ylabel: str, path: Path,
                highlight: np.ndarray | None = None) -> Path:
    """Points over stream time, with a rolling median line; ``highlight`` marks points red."""
    fig = _figure(8, 3.6)
    ax = fig.add_subplot()
    ax.plot(t, y, ".", ms=3, color="tab:blue", alpha=0.6)
    if highlight is not None and highlight.any():
        ax.plot(t[highlight], y[highlight], ".", ms=5, color="tab:red", label="after deadline")
    if t.size >= 20:
        k = max(5, t.size // 50)
        med = np.array([np.median(y[max(0, i - k):i + 1]) for i in range(t.size)])
        ax.plot(t, med, color="black", lw=1.2, label=f"rolling median ({k + 1} decisions)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.set(title=title, xlabel="stream time (s)", ylabel=ylabel)
    ax.grid(alpha=0.3)
    return _save(fig, path)
