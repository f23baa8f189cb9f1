"""List a replay's tracking failures against a simulated video's ground truth, by class.

    python tools/track_failures.py /tmp/f20 /tmp/f20.dec.jsonl [--images ../shared/datasets/ewaste/val]

PREFIX is what tools/make_belt_video.py wrote (PREFIX.gt.jsonl, PREFIX.meta.json). Uses the
scorer's own matching (``scoring.matched_pairs``), so the counts agree with
tools/score_decisions.py. Classes:

- missed, *merged*: a decision's box covers the item (it was decided as part of a neighbour);
  missed, *unseen*: no decision covers it (too faint for the detector: dark on a dark belt);
- duplicate: a second decision within the tolerance of a matched item (the item was cut
  into pieces); with ``--images``, those whose cut-out has several separate parts are counted
  (videos made since 2026-11-28 draw only a cut-out's largest part, ``compose.one_object``,
  so there are none in them: pass ``--images`` for older videos only);
- phantom: a decision near no item.

Each line gives the frame at the line so the case can be looked at with
``ewaste-stream replay VIDEO --annotate out.mp4``. With ``--ignored LOG`` (what ``replay
--ignored-log LOG`` wrote in the same run), each unseen item also says whether the detector
found it and which tracker threshold left it out: the regions of the log that lie on the item
between its entry and the line, counted by reason (``track.Ignored``), e.g. ``left out:
faint_crowded 21`` (seen in 21 frames as a faint region beside another item); ``never a region``
means the detector's mask had nothing there that the tracker looked at. ``--by-photo N`` also lists the N photos
behind most misses and most duplicates: the simulator draws every photo several times a
video, and a few hard ones (black products, a photo of two machines) give a large share.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from ewaste_stream.scoring import T_TOL_FRAMES, Y_TOL, matched_pairs


class Failure(NamedTuple):
    kind: str  # "missed merged", "missed unseen", "duplicate", "duplicate, multi-part cut-out", "phantom"
    text: str  # where to look: item/track, frame, y, photo, box (and, with an ignored log, the reasons)
    file: str | None  # the item's photo (None for phantoms)
    left_out: str | None = None  # unseen with an ignored log: the reason seen most often, or "never a region"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _cover(item: dict, dec: dict, speed: float, fps: float) -> float:
    """Share of the item's box (moved to the decision's time) inside the decision's box."""
    dx = speed * (dec["t_cross"] * fps - item["frame_at_line"])
    x0, y0, x1, y1 = item["bbox_at_line"]
    x0, x1 = x0 + dx, x1 + dx
    a0, b0, a1, b1 = dec["bbox"]
    inter = max(0.0, min(x1, a1) - max(x0, a0)) * max(0.0, min(y1, b1) - max(y0, b0))
    return inter / max(1.0, (x1 - x0) * (y1 - y0))


def _parts(images: Path | None, file: str, cache: dict[str, int]) -> int:
    """Separate parts (>= 2% of the area) of a photo's cut-out; 0 when not known."""
    if images is None:
        return 0
    if file not in cache:
        import cv2
        import numpy as np

        from ewaste_stream.sim.compose import cutout

        bgr = cv2.imread(str(images / file), cv2.IMREAD_COLOR)
        if bgr is None:
            cache[file] = 0
        else:
            _, alpha = cutout(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            n, _, st, _ = cv2.connectedComponentsWithStats((alpha > 0.5).astype(np.uint8))
            cache[file] = int((st[1:, 4] >= 0.02 * st[1:, 4].sum()).sum()) if n > 1 else 0
    return cache[file]


def failures(prefix: Path, decisions: Path, images: Path | None = None,
             ignored: Path | None = None) -> list[tuple[str, str]]:
    """(class, description) per failure."""
    return [(f.kind, f.text) for f in _failures(prefix, decisions, images, ignored)]


def read_ignored(path: Path, camera: str = "cam0") -> dict[int, list[tuple[list[float], str]]]:
    """``{frame seq: [(bbox, reason), ...]}`` of one camera from a ``replay --ignored-log`` file."""
    out: dict[int, list[tuple[list[float], str]]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if row["camera"] == camera:
                out.setdefault(int(row["seq"]), []).extend((r["bbox"], r["reason"]) for r in row["regions"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: not a replay --ignored-log line ({exc})") from None
    return out


def left_out(item: dict, ignored: dict[int, list[tuple[list[float], str]]], speed: float, fps: float) -> Counter:
    """Reasons of the ignored regions on ``item`` (centre inside its box, moved with the belt), from the
    frame it came into view to the frame it reached the line: one count per region and frame."""
    x0, y0, x1, y1 = item["bbox_at_line"]
    line_f = int(item["frame_at_line"])
    reasons: Counter = Counter()
    first = int(item["t_enter"] * fps) if "t_enter" in item else line_f - round(fps)
    for f in range(max(0, first), line_f + 1):
        dx = speed * (f - line_f)
        for (bx0, by0, bx1, by1), why in ignored.get(f, ()):
            cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
            if x0 + dx <= cx <= x1 + dx and y0 <= cy <= y1:
                reasons[why] += 1
    return reasons


def by_photo(prefix: Path, decisions: Path, most: int = 10) -> dict[str, list[tuple[str, int]]]:
    """The photos behind most misses and most duplicates: ``{"missed": [(file, n), ...], "duplicate": ...}``."""
    return _by_photo(_failures(prefix, decisions, None), most)


def _by_photo(rows: list[Failure], most: int) -> dict[str, list[tuple[str, int]]]:
    counts: dict[str, Counter] = {"missed": Counter(), "duplicate": Counter()}
    for kind, _, file, _ in rows:
        key = kind.split()[0].rstrip(",")
        if key in counts and file is not None:
            counts[key][file] += 1
    return {k: c.most_common(most) for k, c in counts.items()}


def _failures(prefix: Path, decisions: Path, images: Path | None,
              ignored_log: Path | None = None) -> list[Failure]:
    """One :class:`Failure` per missed item, duplicate and phantom."""
    meta = json.loads(prefix.with_name(prefix.name + ".meta.json").read_text())
    fps, t_last, speed = float(meta["fps"]), float(meta["t_last_frame"]), float(meta["belt_speed_px_per_frame"])
    if meta.get("belt_direction", "left_to_right") != "left_to_right":
        speed = -speed
    ignored = read_ignored(ignored_log) if ignored_log is not None else None
    gt = _rows(prefix.with_name(prefix.name + ".gt.jsonl"))
    decs = _rows(decisions)
    pairs = matched_pairs(gt, decs, fps)
    matched = set(pairs.values())
    t_tol = T_TOL_FRAMES / fps
    out: list[Failure] = []
    cache: dict[str, int] = {}
    for i, it in enumerate(gt):
        if i in matched or it["t_cross"] > t_last:
            continue
        cov = max((_cover(it, d, speed, fps), d["item_id"]) for d in decs) if decs else (0.0, None)
        kind = "missed merged" if cov[0] >= 0.5 else "missed unseen"
        why, top = "", None
        if kind == "missed unseen" and ignored is not None:
            reasons = left_out(it, ignored, speed, fps).most_common()
            top = reasons[0][0] if reasons else "never a region"
            why = (" left out: " + ", ".join(f"{k} {n}" for k, n in reasons)) if reasons else " never a region"
        out.append(Failure(kind, f"item {it['item']} frame {it['frame_at_line']} y={it['y']:.3f} "
                                 f"{it.get('file', '-')} bbox={it['bbox_at_line']} "
                                 f"track={cov[1] if cov[0] >= 0.5 else '-'}{why}", it.get("file"), top))
    for j, d in enumerate(decs):
        if j in pairs or d["t_cross"] > t_last - t_tol:
            continue
        near = [i for i in matched if abs(gt[i]["t_cross"] - d["t_cross"]) <= t_tol and abs(gt[i]["y"] - d["y"]) <= Y_TOL]
        where = f"track {d['item_id']} frame {round(d['t_cross'] * fps)} y={d['y']:.3f} bbox={[round(v) for v in d['bbox']]}"
        if near:
            it = gt[min(near, key=lambda i: abs(gt[i]["y"] - d["y"]))]
            multi = it.get("file") is not None and _parts(images, it["file"], cache) > 1
            kind = "duplicate, multi-part cut-out" if multi else "duplicate"
            out.append(Failure(kind, f"{where} of item {it['item']} {it.get('file', '-')} "
                                     f"cutout={it.get('cutout', '-')}", it.get("file")))
        else:
            out.append(Failure("phantom", where, None))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("prefix", type=Path, help="simulated video prefix (PREFIX.gt.jsonl, PREFIX.meta.json)")
    ap.add_argument("decisions", type=Path, help="decision log (JSONL) of a replay of PREFIX.cam0.mp4")
    ap.add_argument("--images", type=Path, default=None, help="the photos the video was made from (counts multi-part cut-outs)")
    ap.add_argument("--by-photo", type=int, default=0, metavar="N", help="also list the N photos behind most failures")
    ap.add_argument("--ignored", type=Path, default=None, metavar="LOG",
                    help="replay --ignored-log of the same run: say which tracker threshold left each unseen item out")
    args = ap.parse_args()
    try:
        rows = _failures(args.prefix, args.decisions, args.images, args.ignored)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for f in sorted(rows, key=lambda r: r[:2]):
        print(f"{f.kind:32s} {f.text}")
    print(dict(Counter(f.kind for f in rows)))
    if args.ignored is not None:
        top = Counter(f.left_out for f in rows if f.kind == "missed unseen")
        print("unseen items by the reason they were left out most often: " + (", ".join(f"{k} {n}" for k, n in
                                                                                  top.most_common()) or "none"))
    if args.by_photo > 0:
        for kind, top in _by_photo(rows, args.by_photo).items():
            print(f"{kind} by photo: " + ", ".join(f"{file} {n}" for file, n in top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
