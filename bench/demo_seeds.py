"""The demo scene at every background seed: NanoTrack v2 alone against ChatTracker around it.

Seeds 1-6 are in the fusion model's training rows (``bench/fusion.py --train-scenes``); the demo itself
(seed 7) and seeds 8-12 never are, so their rows are held out. Mean IoU over the frames where the target
shows, as ``chattracker demo`` prints it.

    uv run python bench/demo_seeds.py --json docs/results/demo_seeds.json
"""

from __future__ import annotations

import argparse

from tqdm import tqdm

from chattracker.commands.demo import scores
from chattracker.config import TrackerConfig
from chattracker.demo_scene import DemoScene
from chattracker.tracking import run_tracker

from _cli import emit_report, run_main  # bench/ is the script's folder, first on sys.path

TRAINING_SEEDS = (1, 2, 3, 4, 5, 6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1,2,3,4,5,6,7,8,9,10,11,12")
    parser.add_argument("--base", default="nanotrack_v2")
    parser.add_argument("--json", help="also write the JSON report here")
    args = parser.parse_args(argv)
    rows = {}
    for seed in tqdm([int(s) for s in args.seeds.split(",") if s.strip()], desc="seeds", unit="seed"):
        scene = DemoScene(seed=seed)
        row = {"held_out": seed not in TRAINING_SEEDS}
        for label, enhance in (("base", False), ("chattracker", True)):
            tracker = TrackerConfig(tracker=args.base, enhance=enhance, source="bench").build()
            records = run_tracker(tracker, scene, scene.ground_truth[0], None, total=len(scene), progress=False)
            row[label] = scores(scene, records)["mean_iou"]
        row["gain"] = row["chattracker"] - row["base"]
        rows[seed] = row
        print(f"seed {seed:>2} ({'held out' if row['held_out'] else 'training'}): base {row['base']:.3f}, "
              f"ChatTracker {row['chattracker']:.3f}, gain {row['gain']:+.3f}")
    held = [r["gain"] for r in rows.values() if r["held_out"]]
    report = {"base": args.base, "seeds": rows, "held_out_mean_gain": sum(held) / max(len(held), 1)}
    emit_report(report, args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
