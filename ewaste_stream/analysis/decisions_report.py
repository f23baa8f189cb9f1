"""``ewaste-stream analyse --video DECISIONS.jsonl``: what a line decided, from its decision log.

The log is the wire format, one JSON object a line (``ewaste_stream.protocol`` parses it).
Reported: decisions per class, reject reasons, decision latency (``t_decided - t_cross``)
over stream time and against the deadline, sequence gaps per boot, confidence and views.
Lines that do not parse are counted and listed with their line numbers, never fatal.

With the ground truth of a simulated video (``--gt PREFIX.gt.jsonl``), decisions are matched
to items as ``ewaste_stream.scoring`` does, and the risk-coverage of the *fused* confidence
and margin gives the voting thresholds measured where they act.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from loguru import logger

from ..messages import Decision
from ..scoring import read_decisions

MAX_BAD_LISTED = 20


class DecisionLogError(ValueError):
    """The decision log cannot be read at all (missing, empty, not a file)."""


@dataclass
class DecisionLog:
    """A parsed log (``ewaste_stream.scoring.read_decisions``: the one JSONL reader)."""

    path: Path
    decisions: list[Decision] = field(default_factory=list)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)


def load_decisions(path: str | Path) -> DecisionLog:
    """Parse every line; bad lines are kept aside with their number and the parser's reason."""
    p = Path(path)
    if not p.is_file():
        raise DecisionLogError(f"{p}: decision log not found (the daemon writes it to publish.decisions_log)")
    decisions, bad = read_decisions(p)
    log = DecisionLog(p, decisions, bad)
    if log.bad_lines:
        logger.warning("{}: {} lines are not valid decisions (first: line {}: {})", p, len(log.bad_lines),
                       *log.bad_lines[0])
    if not log.decisions:
        raise DecisionLogError(f"{p}: no valid decisions in the file ({len(log.bad_lines)} bad lines)")
    return log


def seq_gaps(decisions: list[Decision]) -> dict[str, dict]:
    """Per boot, in file order: first/last seq, missing seqs (gaps), duplicates, out-of-order."""
    out: dict[str, dict] = {}
    for boot in dict.fromkeys(d.boot_id for d in decisions):
        seqs = [d.seq for d in decisions if d.boot_id == boot]
        uniq = np.unique(seqs)
        expected = int(uniq[-1] - uniq[0] + 1)
        steps = np.diff(uniq)
        gaps = [(int(a) + 1, int(b) - 1) for a, b, s in zip(uniq[:-1], uniq[1:], steps) if s > 1]
        out[boot] = {"decisions": len(seqs), "first_seq": int(uniq[0]), "last_seq": int(uniq[-1]),
                     "missing": expected - int(uniq.size), "gaps": gaps[:50], "n_gaps": len(gaps),
                     "duplicates": len(seqs) - int(uniq.size),
                     "out_of_order": int(np.sum(np.diff(seqs) < 0)),
                     "starts_at_1": bool(uniq[0] == 1)}
    return out


def latency_stats(lat: np.ndarray) -> dict[str, float | None]:
    if lat.size == 0:
        return {"median": None, "p95": None, "p99": None, "max": None}
    q = np.percentile(lat, [50, 95, 99])
    return {"median": float(q[0]), "p95": float(q[1]), "p99": float(q[2]), "max": float(lat.max())}


def summarise_decisions(log: DecisionLog) -> dict:
    ds = log.decisions
    lat = np.array([d.t_decided - d.t_cross for d in ds])
    late = [d for d in ds if d.deadline is not None and d.t_decided > d.deadline]
    rejects = [d for d in ds if d.rejected]
    return {
        "path": str(log.path), "decisions": len(ds), "bad_lines": len(log.bad_lines),
        "bad_lines_listed": [{"line": n, "error": e} for n, e in log.bad_lines[:MAX_BAD_LISTED]],
        "lines": sorted({d.line for d in ds}), "models": sorted({f"{d.model.get('name')}@{str(d.model.get('sha256'))[:12]}"
                                                                   for d in ds}),
        "per_label": dict(Counter(d.label for d in ds).most_common()),
        "rejects": len(rejects), "reject_rate": len(rejects) / len(ds),
        "reject_reasons": dict(Counter(d.reject_reason.value for d in rejects if d.reject_reason).most_common()),
        "rejected_top_labels": dict(Counter(d.top_label for d in rejects).most_common()),
        "latency_s": latency_stats(lat), "after_deadline": len(late),
        "views": {"mean": float(np.mean([d.views for d in ds])), "zero": sum(d.views == 0 for d in ds)},
        "confidence_mean_accepted": float(np.mean([d.confidence for d in ds if not d.rejected]))
        if len(rejects) < len(ds) else None,
        "boots": seq_gaps(ds),
    }


def _charts(log: DecisionLog, s: dict, out: Path) -> dict[str, str]:
    """Chart PNGs under ``out/img/decisions``; paths relative to ``out``."""
    from . import plots

    img_dir = out / "img" / "decisions"
    ds = log.decisions
    t = np.array([d.t_cross for d in ds])
    lat = np.array([d.t_decided - d.t_cross for d in ds])
    late = np.array([d.deadline is not None and d.t_decided > d.deadline for d in ds])
    rejected = np.array([d.rejected for d in ds])
    order = np.argsort(t, kind="stable")
    charts = {
        "labels": plots.bar_chart(s["per_label"], "Decisions per label", img_dir / "labels.png"),
        "latency": plots.time_series(t[order], lat[order], "Decision latency (t_decided - t_cross)",
                                     "latency (s)", img_dir / "latency.png", highlight=late[order]),
        "confidence": plots.histogram_by_outcome(np.array([d.confidence for d in ds]), ~rejected,
                                                 "Fused confidence of each decision", "confidence",
                                                 img_dir / "confidence.png", names=("accepted", "rejected", "decisions")),
    }
    if s["reject_reasons"]:
        charts["reasons"] = plots.bar_chart(s["reject_reasons"], "Reject reasons", img_dir / "reasons.png")
    return {k: v.relative_to(out).as_posix() for k, v in charts.items()}


def _html(s: dict, charts: dict[str, str]):
    from .report import Report, figures, para, table

    lat = s["latency_s"]
    rep = Report("Decision log analysis", f"{s['path']} · {s['decisions']} decisions · lines {', '.join(s['lines'])}")
    rows = [("decisions", s["decisions"]), ("unparsable lines", s["bad_lines"]),
            ("rejects", f"{s['rejects']} ({s['reject_rate']:.1%})"),
            ("latency median / p95 / max (s)", " / ".join("–" if lat[k] is None else f"{lat[k]:.3f}"
                                                          for k in ("median", "p95", "max"))),
            ("decided after the deadline", s["after_deadline"]), ("mean views per item", f"{s['views']['mean']:.2f}"),
            ("model(s)", ", ".join(s["models"]))]
    rep.add("Summary", table(("", "value"), rows))
    rep.add("Labels and rejects",
            figures([(charts["labels"], "Decisions per label (reject = manual-sort bin)")]
                    + ([(charts["reasons"], "Why items were rejected")] if "reasons" in charts else [])),
            table(("rejected item's top label", "count"), list(s["rejected_top_labels"].items())))
    rep.add("Latency and confidence",
            figures([(charts["latency"], "Latency over stream time; red: decided after its deadline")], width=760),
            figures([(charts["confidence"], "Confidence of accepted vs rejected decisions")]))
    boots = [(b[:12], v["decisions"], v["first_seq"], v["last_seq"], v["missing"], v["n_gaps"], v["duplicates"],
              v["out_of_order"], "yes" if v["starts_at_1"] else "no") for b, v in s["boots"].items()]
    gaps = [(b[:12], f"{a}–{z}" if z > a else str(a)) for b, v in s["boots"].items() for a, z in v["gaps"][:20]]
    rep.add("Sequence numbers per boot",
            table(("boot", "decisions", "first seq", "last seq", "missing", "gaps", "duplicates",
                   "out of order", "starts at 1"), boots),
            table(("boot", "missing seq"), gaps) if gaps else para("No gaps: no decision is missing from the log."))
    if s["bad_lines_listed"]:
        rep.add("Unparsable lines", table(("line", "error"), [(b["line"], b["error"]) for b in s["bad_lines_listed"]]))
    return rep


def _gt_section(rep, g: dict, out: Path) -> None:
    from . import plots
    from .model_html import recommendation_table
    from .report import figures, para, table

    sc = g["score"]
    pct = lambda v: "–" if v is None else f"{v:.1%}"  # noqa: E731
    rows = [("items / matched / missed", f"{sc['items']} / {sc['matched']} / {sc['missed']}"),
            ("duplicates / phantoms", f"{sc['duplicates']} / {sc['phantoms']}"),
            ("accuracy of accepted decisions", pct(sc["accuracy_accepted"])), ("reject rate", pct(sc["reject_rate"])),
            ("accuracy, misses count as errors", pct(sc["accuracy_all"])),
            ("top label right (matched, >= 1 view)", pct(g.get("top_label_accuracy")))]
    blocks = [table(("", "value"), rows)]
    if g["recommended"]:
        curves = {k: (np.array(v["coverage"]), np.array(v["accuracy"])) for k, v in g["risk_coverage"].items()}
        marks = {k: (r["coverage"], r["accuracy"]) for k, r in g["recommended"].items() if r["threshold"] is not None}
        target = next(iter(g["recommended"].values()))["target_accuracy"]
        png = plots.risk_coverage_plot(curves, marks, target, out / "img" / "decisions" / "risk_coverage.png")
        blocks += [figures([(png.relative_to(out).as_posix(), "Fused confidence / margin of the matched decisions: "
                                                              "accuracy among accepted vs fraction accepted")]),
                   "<h3>Voting thresholds measured on fused decisions</h3>", recommendation_table(g["recommended"]),
                   para("Smallest threshold on the fused score whose accepted accuracy reaches the target, over "
                        "the decisions matched to ground truth (decisions rejected for lost tracks or too few "
                        "views are rejected whatever the threshold).")]
    rep.add("Against ground truth", *blocks)


def decisions_report(path: str | Path, out_dir: str | Path, html_name: str = "index.html",
                     gt: GroundTruth | None = None, target_accuracy: float = 0.98) -> dict:
    """Write the decision-log report (``html_name``, its numbers as JSON -- ``report.json`` beside
    ``index.html``, else ``<stem>.json`` -- and ``img/decisions/``); return the numbers
    (with ``ground_truth`` when ``gt`` is given)."""
    from .report import write_report

    log = load_decisions(path)
    s = summarise_decisions(log)
    out = Path(out_dir)
    charts = _charts(log, s, out)
    rep = _html(s, charts)
    if gt is not None:
        s["ground_truth"] = against_ground_truth(log, gt, target_accuracy)
        _gt_section(rep, s["ground_truth"], out)
    html = write_report(out, rep, s, html_name=html_name, 
                        json_name="report.json" if html_name == "index.html" else f"{Path(html_name).stem}.json")
    logger.info("decision report written to {}", html)
    return s


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth of a simulated video: ``PREFIX.gt.jsonl`` rows, its fps, its last frame time."""

    rows: list[dict]
    fps: float
    t_last: float | None = None

    @classmethod
    def read(cls, path: str | Path, fps: float | None = None) -> "GroundTruth":
        from ..scoring import meta_beside, read_gt

        p = Path(path)
        if not p.is_file():
            raise DecisionLogError(f"{p}: ground-truth file not found (a simulated video's PREFIX.gt.jsonl)")
        try:
            rows = read_gt(p)
        except ValueError as exc:
            raise DecisionLogError(str(exc)) from None
        meta = meta_beside(p) or {}
        fps = fps or meta.get("fps")
        if not fps:
            raise DecisionLogError(f"{p}: no PREFIX.meta.json beside it to give the fps; pass --fps")
        return cls(rows, float(fps), meta.get("t_last_frame"))


def against_ground_truth(log: DecisionLog, gt: GroundTruth, target_accuracy: float = 0.98) -> dict:
    """Score (as ``scoring.score``) + risk-coverage and recommended thresholds of the fused
    confidence / margin over the matched decisions (those with at least one view)."""
    from ..scoring import matched_pairs, score_report
    from . import uncertainty

    result, details = score_report(gt.rows, log.decisions, gt.fps, gt.t_last)
    pairs = matched_pairs(gt.rows, log.decisions, gt.fps)
    idx = [d for d in sorted(pairs) if log.decisions[d].views > 0]
    out = {"score": result, "score_details": details, "n_scored": len(idx), "risk_coverage": {}, "recommended": {}}
    if len(idx) < 2:
        return out
    correct = np.array([log.decisions[d].top_label == gt.rows[pairs[d]]["label"] for d in idx])
    out["top_label_accuracy"] = float(correct.mean())
    for name in ("confidence", "margin"):
        s = np.array([getattr(log.decisions[d], name) for d in idx])
        rc = uncertainty.risk_coverage(s, correct)
        out["risk_coverage"][name] = {"coverage": rc.coverage.tolist(), "accuracy": rc.accuracy.tolist(),
                                      "aurc": rc.aurc()}
        out["recommended"][name] = uncertainty.recommend_threshold(s, correct, name, target_accuracy).to_dict()
    return out
