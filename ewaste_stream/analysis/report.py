"""A small, dependency-free HTML report writer: ``index.html`` + images in ``img/`` beside it
(relative links, so the folder can be zipped or copied as a whole) + the raw numbers in
``report.json``. Every string is escaped; numbers are formatted here, once."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d232b}
header{background:#1f3a4d;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85;font-size:13px}
nav{padding:8px 28px;background:#e3e8ee;font-size:13px}nav a{margin-right:14px;color:#1f3a4d}
section{background:#fff;margin:16px 28px;padding:14px 20px;border-radius:6px;box-shadow:0 1px 3px #0002}
h2{font-size:18px;margin:4px 0 10px}h3{font-size:15px;margin:12px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border:1px solid #d5dbe1;padding:3px 8px;text-align:left}
th{background:#eef1f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.figs{display:flex;flex-wrap:wrap;gap:12px}.figs figure{margin:0}.figs img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:12px;color:#444;max-width:460px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}.card{width:236px;font-size:12px;border:1px solid #d5dbe1;border-radius:4px;padding:4px}
.card img{width:112px;height:112px;object-fit:cover}.card .bad{color:#b00020;font-weight:600}.card .ok{color:#1b7f3b}
.note{font-size:13px;color:#333}.key{font-family:ui-monospace,monospace;background:#eef1f4;padding:1px 4px}
"""


def esc(x: Any) -> str:
    return html.escape(str(x))


def fmt(x: Any, digits: int = 3) -> str:
    """Numbers for humans: ints as is, floats to ``digits``, None as an en dash."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, bool) or isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _cell(v: Any, digits: int) -> str:
    numeric = isinstance(v, (int, float)) and not isinstance(v, bool) or v is None
    return f'<td class="num">{esc(fmt(v, digits))}</td>' if numeric else f"<td>{esc(fmt(v, digits))}</td>"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v, digits) for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def para(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{esc(text)}</p>'


def figures(items: Sequence[tuple[str, str]], width: int = 460) -> str:
    """(relative image path, caption) pairs side by side."""
    figs = "".join(f'<figure><img src="{esc(src)}" width="{width}" alt="{esc(cap)}">'
                   f"<figcaption>{esc(cap)}</figcaption></figure>" for src, cap in items)
    return f'<div class="figs">{figs}</div>'


@dataclass(frozen=True, slots=True)
class Card:
    """One image tile: the photo, its Grad-CAM, and lines of text (``ok`` colours the first)."""

    image: str
    heatmap: str | None
    lines: tuple[str, ...]
    ok: bool = True


def gallery(cards: Sequence[Card]) -> str:
    out = []
    for c in cards:
        imgs = f'<img src="{esc(c.image)}" alt="image">' + (
            f'<img src="{esc(c.heatmap)}" alt="Grad-CAM">' if c.heatmap else "")
        text = "".join(f'<div class="{("ok" if c.ok else "bad") if i == 0 else ""}">{esc(t)}</div>'
                       for i, t in enumerate(c.lines))
        out.append(f'<div class="card">{imgs}{text}</div>')
    return f'<div class="gallery">{"".join(out)}</div>'


@dataclass
class Section:
    title: str
    blocks: list[str] = field(default_factory=list)  # HTML fragments made with the helpers above

    @property
    def anchor(self) -> str:
        return "".join(ch if ch.isalnum() else "-" for ch in self.title.lower())


@dataclass
class Report:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (text, href) added to the nav bar

    def add(self, title: str, *blocks: str) -> Section:
        s = Section(title, list(blocks))
        self.sections.append(s)
        return s

    def render(self) -> str:
        nav = "".join(f'<a href="#{s.anchor}">{esc(s.title)}</a>' for s in self.sections)
        nav += "".join(f'<a href="{esc(href)}"><b>{esc(text)}</b></a>' for text, href in self.links)
        body = "".join(f'<section id="{s.anchor}"><h2>{esc(s.title)}</h2>{"".join(s.blocks)}</section>'
                       for s in self.sections)
        return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(self.title)}</title>'
                f"<style>{_CSS}</style></head><body><header><h1>{esc(self.title)}</h1><p>{esc(self.subtitle)}</p>"
                f"</header><nav>{nav}</nav>{body}</body></html>")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_report(out_dir: Path, report: Report, numbers: dict[str, Any], html_name: str = "index.html",
                 json_name: str = "report.json") -> Path:
    """Write the HTML page and the numbers as JSON into ``out_dir``; returns the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / json_name).write_text(json.dumps(numbers, indent=2, default=_json_default,
                                                allow_nan=False), encoding="utf-8")
    path = out_dir / html_name
    path.write_text(report.render(), encoding="utf-8")
    return path
