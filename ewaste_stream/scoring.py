"""Score a run's decisions against a simulated video's ground truth.

Matching is one-to-one, greedy by distance: every (item, decision) pair within the
tolerances (``|dt_cross| <= 3 frames`` and ``|dy| <= 0.1``) is a candidate; candidates are
taken closest first (distance ``(dt/t_tol)^2 + (dy/y_tol)^2``, ties by item then seq) while
both are free. Then:

- a decision left over that is within tolerance of an already matched item is a *duplicate*;
  any other left-over decision is a *phantom*;
- an item with no decision is *missed*; ``accuracy_all`` counts misses as errors;
- ``reject_rate`` and ``accuracy_accepted`` are over matched items (rejected / accepted ones);
- ``top1_matched``: matched items whose decision's ``top_label`` (the classifier's best class,
  rejected or not) is right: the classifier's part, apart from the reject rule;
- ``per_class_recall[c]`` = items of class c decided correctly / items of class c;
- ``confusion[true][predicted]`` counts matched items by decision label (``reject`` included)
  and misses under ``missed``;
- ``seq_gaps``: missing ``seq`` numbers per ``boot_id`` (``seq`` starts at 1 for every boot).

End of the video (``t_last``, the last frame's time, when known): items that cross the line
after it are not scored (the pipeline never sees them cross), nor are decisions matched to
them or left-over decisions within the tolerance of the end (what a flush at end of stream
decides). They are reported as ``ignored`` by ``score_report``, never as phantoms.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .messages import REJECT_LABEL, Decision
from .protocol import ProtocolError, decision_to_dict, decode_decision

T_TOL_FRAMES = 3
Y_TOL = 0.1
SCORE_KEYS = ("items", "decisions", "matched", "missed", "duplicates", "phantoms", "accuracy_matched",
              "accuracy_all", "reject_rate", "accuracy_accepted", "top1_matched", "seq_gaps", "per_class_recall",
              "confusion")


@dataclass(frozen=True, slots=True)
class _Item:
    idx: int
    label: str
    t: float
    y: float


@dataclass(frozen=True, slots=True)
class _Dec:
    idx: int
    label: str
    t: float
    y: float
    seq: int | None
    boot_id: str
    top: str  # top_label (the label when a row has none)


def _items(rows: Iterable[Mapping[str, Any]]) -> list[_Item]:
    out = []
    for i, r in enumerate(rows):
        try:
            out.append(_Item(i, str(r["label"]), float(r["t_cross"]), float(r["y"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"ground truth row {i + 1}: needs label, t_cross and y ({exc})") from exc
    return out


def _decisions(rows: Iterable[Mapping[str, Any] | Decision]) -> list[_Dec]:
    out = []
    for i, r in enumerate(rows):
        d = decision_to_dict(r) if isinstance(r, Decision) else r
        try:
            seq = None if d.get("seq") is None else int(d["seq"])
            out.append(_Dec(i, str(d["label"]), float(d["t_cross"]), float(d["y"]), seq, str(d.get("boot_id", "")),
                            str(d.get("top_label") or d["label"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"decision row {i + 1}: needs label, t_cross and y ({exc})") from exc
    return out


def _candidates(items: list[_Item], decs: list[_Dec], t_tol: float, y_tol: float) -> list[tuple[float, int, int]]:
    """(distance, item idx, decision idx) for every pair within tolerance (sweep over sorted t)."""
    by_t = sorted(decs, key=lambda d: d.t)
    ts = [d.t for d in by_t]
    out = []
    for it in items:
        lo, hi = bisect.bisect_left(ts, it.t - t_tol), bisect.bisect_right(ts, it.t + t_tol)
        for d in by_t[lo:hi]:
            dy = abs(d.y - it.y)
            if dy <= y_tol:
                out.append((((d.t - it.t) / t_tol) ** 2 + (dy / y_tol) ** 2, it.idx, d.idx))
    out.sort(key=lambda c: (c[0], c[1], decs[c[2]].seq or 0, c[2]))
    return out


def match(items: list[_Item], decs: list[_Dec], t_tol: float, y_tol: float) -> tuple[dict[int, int], set[int]]:
    """Greedy one-to-one matching -> ({decision idx: item idx}, decision idxs near a matched item)."""
    cands = _candidates(items, decs, t_tol, y_tol)
    pairs: dict[int, int] = {}
    taken_items: set[int] = set()
    for _, i, d in cands:
        if i not in taken_items and d not in pairs:
            pairs[d] = i
            taken_items.add(i)
    near_matched = {d for _, i, d in cands if d not in pairs and i in taken_items}
    return pairs, near_matched


def seq_gaps(decs: Iterable[_Dec]) -> int:
    """Missing seq numbers per boot (each boot counts from 1); repeats are not gaps."""
    by_boot: dict[str, set[int]] = defaultdict(set)
    for d in decs:
        if d.seq is not None:
            by_boot[d.boot_id].add(d.seq)
    return sum(max(s) - len(s) for s in by_boot.values() if s)


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else round(num / den, 6)


def score_report(gt_rows: Iterable[Mapping[str, Any]], decision_rows: Iterable[Mapping[str, Any] | Decision],
                 fps: float, t_last: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(score dict, details)``; details hold what is not scored (``ignored_items``,
    ``ignored_decisions``) and the tolerances used."""
    if not fps or fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    items, decs = _items(gt_rows), _decisions(decision_rows)
    t_tol = T_TOL_FRAMES / fps
    pairs, near = match(items, decs, t_tol, Y_TOL)
    scored = {it.idx for it in items if t_last is None or it.t <= t_last + 1e-9}
    end = float("inf") if t_last is None else t_last - t_tol
    counted = [d for d in decs if (d.idx in pairs and pairs[d.idx] in scored) or (d.idx not in pairs and d.t <= end)]
    item_of = {i: d for d, i in pairs.items() if i in scored}
    correct: Counter[str] = Counter()
    confusion: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for it in items:
        if it.idx not in scored:
            continue
        d = item_of.get(it.idx)
        pred = "missed" if d is None else decs[d].label
        confusion[it.label][pred] += 1
        correct[it.label] += int(pred == it.label)
    per_class = Counter(items[i].label for i in scored)
    matched = len(item_of)
    rejected = sum(1 for d in item_of.values() if decs[d].label == REJECT_LABEL)
    n_correct = sum(correct.values())
    top1 = sum(1 for i, d in item_of.items() if decs[d].top == items[i].label)
    result = {
        "items": len(scored), "decisions": len(counted), "matched": matched, "missed": len(scored) - matched,
        "duplicates": sum(1 for d in counted if d.idx in near),
        "phantoms": sum(1 for d in counted if d.idx not in pairs and d.idx not in near),
        "accuracy_matched": _ratio(n_correct, matched), "accuracy_all": _ratio(n_correct, len(scored)),
        "reject_rate": _ratio(rejected, matched), "accuracy_accepted": _ratio(n_correct, matched - rejected),
        "top1_matched": _ratio(top1, matched), "seq_gaps": seq_gaps(decs),
        "per_class_recall": {c: _ratio(correct[c], per_class[c]) for c in sorted(per_class)},
        "confusion": {c: dict(sorted(confusion[c].items())) for c in sorted(confusion)},
    }
    details = {"ignored_items": len(items) - len(scored), "ignored_decisions": len(decs) - len(counted),
               "t_tol_s": t_tol, "y_tol": Y_TOL, "t_last": t_last}
    return result, details


def matched_pairs(gt_rows: Iterable[Mapping[str, Any]], decision_rows: Iterable[Mapping[str, Any] | Decision],
                  fps: float) -> dict[int, int]:
    """``{decision row index: ground-truth row index}``: the one-to-one matching ``score`` uses
    (for per-decision analyses such as risk-coverage of the fused confidence)."""
    if not fps or fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    return match(_items(gt_rows), _decisions(decision_rows), T_TOL_FRAMES / fps, Y_TOL)[0]


def score(gt_rows: Iterable[Mapping[str, Any]], decision_rows: Iterable[Mapping[str, Any] | Decision],
          fps: float, t_last: float | None = None) -> dict[str, Any]:
    """Score decisions (wire-format dicts or ``Decision``) against ground-truth rows; keys: ``SCORE_KEYS``."""
    return score_report(gt_rows, decision_rows, fps, t_last)[0]


# ---------------------------------------------------------------- files


def read_gt(path: str | Path) -> list[dict[str, Any]]:
    """Ground-truth rows of a ``*.gt.jsonl`` file (errors name the file and line)."""
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not a JSON line ({exc.msg}); is this a *.gt.jsonl file?") from exc
    return rows


def read_decisions(path: str | Path) -> tuple[list[Decision], list[tuple[int, str]]]:
    """Decisions of a JSONL log; malformed lines are skipped and returned as (line number, error)."""
    out, bad = [], []
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(decode_decision(line))
            except ProtocolError as exc:
                bad.append((n, str(exc)))
    return out, bad


def meta_beside(gt_path: str | Path) -> dict[str, Any] | None:
    """The ``PREFIX.meta.json`` written beside ``PREFIX.gt.jsonl``, if there is one."""
    p = Path(gt_path)
    name = p.name[: -len(".gt.jsonl")] if p.name.endswith(".gt.jsonl") else p.stem
    meta = p.with_name(f"{name}.meta.json")
    if not meta.is_file():
        return None
    return json.loads(meta.read_text())


def format_report(result: Mapping[str, Any], details: Mapping[str, Any]) -> str:
    """A human-readable report: counts, accuracies, per-class recall, confusion matrix."""
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    lines = [f"items {result['items']}  decisions {result['decisions']}  matched {result['matched']}  "
             f"missed {result['missed']}  duplicates {result['duplicates']}  phantoms {result['phantoms']}  "
             f"seq gaps {result['seq_gaps']}",
             f"accuracy: matched {pct(result['accuracy_matched'])}  all (misses = errors) "
             f"{pct(result['accuracy_all'])}  accepted {pct(result['accuracy_accepted'])}  "
             f"reject rate {pct(result['reject_rate'])}  top-1 of matched, rejects included "
             f"{pct(result['top1_matched'])}",
             f"(tolerance +-{details['t_tol_s'] * 1000:.0f} ms, +-{details['y_tol']} y; not scored after the "
             f"end of the video: {details['ignored_items']} items, {details['ignored_decisions']} decisions)",
             "", "per-class recall:"]
    lines += [f"  {c:<16} {pct(v)}" for c, v in result["per_class_recall"].items()]
    cols = sorted({p for row in result["confusion"].values() for p in row})
    lines += ["", "confusion (rows: truth, columns: decision):",
              " " * 17 + " ".join(f"{c[:8]:>8}" for c in cols)]
    for t, row in result["confusion"].items():
        lines.append(f"  {t[:14]:<14} " + " ".join(f"{row.get(c, 0):>8}" for c in cols))
    return "\n".join(lines)
