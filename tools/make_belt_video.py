#!/usr/bin/env python
"""Simulate a conveyor belt carrying e-waste photos: mp4 per camera + ground truth + meta.

Example (a 20 s, 720p, 60 fps evaluation video from the val photos):

    python tools/make_belt_video.py --images /work/shared/datasets/ewaste/val --out /tmp/belt20 \\
        --seconds 20 --fps 60 --size 1280x720 --rate 35 --cameras 1 --seed 1

writes /tmp/belt20.cam0.mp4, /tmp/belt20.gt.jsonl and /tmp/belt20.meta.json. Use val images
for videos that evaluate models and train images only for training data.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ewaste_stream.sim.effects import Realism  # noqa: E402

_KNOBS = {  # flag -> (Realism field, help)
    "texture": "belt texture strength (grain, streaks, seams); 0 = flat belt",
    "lighting": "amplitude of the slow lighting drift (relative gain)",
    "vignette": "brightness fall-off towards the corners",
    "noise": "sensor noise sigma (grey levels)",
    "motion_blur": "exposure as a fraction of a frame (blur = this x belt px/frame)",
    "shadows": "shadow darkness under items (0..1)",
    "rotation": "items are rotated uniformly within +- this many degrees",
    "min_size": "smallest item (silhouette's longest side) as a fraction of the belt width",
    "max_size": "largest item, same unit",
    "dark_items": "fraction of items darkened to near-belt brightness",
    "perspective": "homography strength of cameras 1.. (camera 0 looks straight down)",
}


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 1280x720, got {text!r}") from None
    return w, h


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True, type=Path, help="folder of class folders (Class/*.jpg)")
    p.add_argument("--out", required=True, type=Path, help="output prefix: writes PREFIX.cam0.mp4 ...")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--fps", type=float, default=60.0)
    p.add_argument("--size", type=parse_size, default=(1280, 720), help="WxH (default 1280x720)")
    p.add_argument("--rate", type=float, default=35.0, help="requested items per second (Poisson)")
    p.add_argument("--cameras", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--belt-speed", type=int, default=None, help="belt px/frame (default ~1.7 widths/s)")
    p.add_argument("--lanes", type=int, default=4)
    p.add_argument("--gap", type=int, default=5, help="items stay >= ~2*gap px apart (default 5: >= 10 px)")
    defaults = Realism()
    g = p.add_argument_group("realism knobs (each on by default at a moderate level; 0 switches one off)")
    for name, text in _KNOBS.items():
        g.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name),
                       help=f"{text} (default {getattr(defaults, name)})")
    g.add_argument("--no-cutout", action="store_true", help="keep every photo's whole tile")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    from ewaste_stream.log import setup_logging
    from ewaste_stream.sim import make_belt_video

    setup_logging()
    try:
        realism = Realism(cutout=not args.no_cutout, **{k: getattr(args, k) for k in _KNOBS})
        t0 = time.perf_counter()
        res = make_belt_video(args.images, args.out, realism=realism, seconds=args.seconds, fps=args.fps,
                              size=args.size, rate=args.rate, cameras=args.cameras, seed=args.seed,
                              belt_speed=args.belt_speed, lanes=args.lanes, gap=args.gap)
    except (ValueError, ValidationError) as exc:
        print(f"make_belt_video: bad arguments: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, OSError) as exc:
        print(f"make_belt_video: {exc}", file=sys.stderr)
        return 1
    m = res.meta
    print(f"{', '.join(str(v) for v in res.videos)} + {res.gt.name} + {res.meta_path.name}: "
          f"{m['n_frames']} frames, {m['items']} items, {m['rate_achieved']:.2f} items/s achieved "
          f"(requested {m['rate_requested']}), belt {m['belt_speed_px_per_frame']} px/frame, "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
