"""The HTML of the model analysis report (``analyse``): sections built from the numbers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .report import Card, Report, figures, gallery, para, table

if TYPE_CHECKING:  # pragma: no cover
    from .model_report import Predictions

Tiles = dict[int, tuple[str, str]]


def _summary(n: dict) -> list[str]:
    m, u = n["metrics"], n["uncertainty"]
    rows = [("model", f"{n['model']['name']} ({n['model']['arch']}, v{n['model']['version']}, "
                      f"input {n['model']['input_size']} px, temperature {n['model']['temperature']:.3f})"),
            ("data", f"{n['data']['path']}: {n['data']['images']} images, {n['data']['views']}"),
            ("accuracy", f"{m['accuracy']:.2%}"), ("macro F1", f"{m['macro']['f1']:.4f}"),
            ("ECE (15 bins)", f"{m['ece']:.4f}"), ("mean confidence", f"{m['mean_confidence']:.4f}"),
            ("AURC (confidence)", f"{u['risk_coverage']['confidence']['aurc']:.4f}")]
    blocks = [table(("", "value"), rows), _recommendation_block(u)]
    lf = n.get("leak_free")
    if lf and "metrics" in lf:
        recs = "; ".join(f"{r['config_key']} {r['threshold'] if r['threshold'] is not None else 'not reachable'} "
                         f"(rejects {r['reject_rate']:.1%})" for r in lf["uncertainty"]["recommended"].values())
        blocks.insert(1, para(f"Without the {n['leaks']['n']} images that have an exact or near (dHash <= 3) copy "
                              f"in {n['leaks']['train_dir']}: {lf['n']} images, accuracy "
                              f"{lf['metrics']['accuracy']:.2%}, macro F1 {lf['macro_f1']:.4f}, ECE "
                              f"{lf['metrics']['ece']:.4f}; recommended {recs}."))
    return blocks


def recommendation_table(recs: dict) -> str:
    """Table of ``Recommendation.to_dict()`` values (one row per config key)."""
    rows = [(r["config_key"], r["threshold"], f"{r['accuracy']:.2%}", f"{r['reject_rate']:.1%}",
             f"{r['n_accepted']} / {r['n_total']}") for r in recs.values()]
    return table(("config key", "threshold", "accepted accuracy", "reject rate", "accepted"), rows)


def _recommendation_block(u: dict) -> str:
    recs = u["recommended"]
    target = next(iter(recs.values()))["target_accuracy"]
    now = ""
    if "at_config" in u:
        c = u["at_config"]
        acc = "–" if c["accuracy"] is None else f"{c['accuracy']:.2%}"
        now = para(f"With the configured thresholds (vote.min_confidence {c['min_confidence']:g}, vote.min_margin "
                   f"{c['min_margin']:g}, together): accepted accuracy {acc}, reject rate {c['reject_rate']:.1%}; "
                   f"{c['errors_accepted']} errors pass, {c['errors_rejected']} go to the reject bin.")
    return ("<h3>Recommended reject thresholds for the voting stage</h3>"
            + recommendation_table(recs) + now
            + para(f"Smallest threshold whose accepted accuracy reaches {target:.0%} (each key alone; "
                   "threshold 0 = no reject needed, '–' = not reachable on this set). Measured on "
                   "single images: the voting stage fuses several views per item, so confirm on a "
                   "decision log (analyse --video) before changing config/default.yaml."))


def _uncertainty(n: dict, charts: dict[str, str]) -> list[str]:
    rows = []
    for score, rc in n["uncertainty"]["risk_coverage"].items():
        for cov, pt in rc["at_coverage"].items():
            rows.append((score, f"{float(cov):.0%}", pt["threshold"], f"{pt['coverage']:.1%}",
                         f"{pt['accuracy']:.2%}", pt["n_accepted"]))
    return [figures([(charts["risk_coverage"], "Accuracy among accepted items vs the fraction accepted, "
                                               "for a confidence or a margin threshold; dots: recommended.")]),
            table(("score", "target coverage", "threshold", "coverage", "accepted accuracy", "accepted"), rows),
            figures([(charts["confidence"], "Top-1 probability, correct vs wrong"),
                     (charts["margin"], "Top-1 minus top-2, correct vs wrong"),
                     (charts["entropy"], "Entropy / log(C), correct vs wrong")], width=400)]


def _metrics(n: dict, chart: str) -> list[str]:
    per = n["metrics"]["per_class"]
    rows = [(c, v["precision"], v["recall"], v["f1"], v["support"], v["mean_confidence"]) for c, v in per.items()]
    return [figures([(chart, "Confusion matrix: counts and row-normalised (all images)")], width=1000),
            table(("class", "precision", "recall", "F1", "support", "mean confidence"), rows)]


def _card(i: int, p: "Predictions", names: tuple[str, ...], tiles: Tiles, leaked: set[str]) -> Card:
    from .model_report import top_k

    thumb, cam = tiles.get(i, (None, None))
    top3 = " · ".join(f"{c} {v:.2f}" for c, v in top_k(p.probs[i], names))
    ok = not bool(p.wrong[i])
    head = (f"{names[p.labels[i]]} ✓" if ok else f"true {names[p.labels[i]]} → {names[p.preds[i]]}")
    name = Path(p.paths[i]).name + (" (copy in train)" if p.paths[i] in leaked else "")
    return Card(image=thumb or "", heatmap=cam, lines=(head, f"top-3: {top3}", name), ok=ok)


def build_model_report(n: dict, p: "Predictions", names: tuple[str, ...], charts: dict[str, str],
                       embeds: dict[str, str], gradcam: tuple[list[int], list[int], Tiles]) -> Report:
    sample, errors, tiles = gradcam
    layer = n["gradcam"]["target_layer"]
    leaked = {lk["eval"] for lk in n["leaks"]["items"]}
    rep = Report(f"Model analysis: {n['model']['name']}",
                 f"{n['data']['path']} · {n['data']['images']} images · sha256 {n['model']['sha256'][:12]}")
    rep.add("Summary", *_summary(n))
    rep.add("Reject thresholds and uncertainty", *_uncertainty(n, charts))
    rep.add("Confusion matrix and per-class metrics", *_metrics(n, charts["confusion"]))
    n_wrong = int(p.wrong.sum())
    rep.add(f"Worst errors ({len(errors)} of {n_wrong}, most confident first)",
            para(f"Each: the image, its Grad-CAM for the predicted class (target layer {layer}), the top-3."),
            gallery([_card(i, p, names, tiles, leaked) for i in errors]) if errors else para("No misclassified images."))
    rep.add(f"Grad-CAM: {len({p.labels[i] for i in sample})} classes × up to {_per_class(sample, p)} images",
            para(f"Where the model looks for the class it predicts (target layer {layer}; red = strong)."),
            gallery([_card(i, p, names, tiles, leaked) for i in sample]))
    if embeds:
        rep.add("Embedding maps of the penultimate features",
                figures([(src, f"{m}: PCA(50) → {m}; colour = true class, X = misclassified")
                         for m, src in embeds.items()], width=640))
    return rep


def _per_class(sample: list[int], p: "Predictions") -> int:
    if not sample:
        return 0
    return int(np.bincount(p.labels[sample]).max())
