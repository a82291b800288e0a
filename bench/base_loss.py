"""Benchmark (analysis only): where does the base tracker lose the target, and does its score say so?

A wrapper can only correct a loss it has a sign of. The score is the base's own sign: CSRT and KCF
report failure (score 0), NanoTrack grades its confidence. Per sequence this counts the frames where
the base's box has lost the target (IoU with the ground truth under ``--lost-iou``), the frames where
its score is under ``--low-score`` (the wrapper's ``low_score``), and how many of the lost frames had
that low score. It reads the ground truth: never a result to report as a tracker's.

    uv run python bench/base_loss.py                            # NanoTrack v2 on the 15 development sequences
    uv run python bench/base_loss.py --base csrt --json loss.json

Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
from typing import Any

from tqdm import tqdm

from chattracker.errors import InputError
from chattracker.types import Box
from chattracker.video import read_image
from chattracker_eval.datasets.base import Sequence
from chattracker_trackers.base import build_tracker

# bench/ is the script's folder, first on sys.path
from _cli import add_dataset_arguments, emit_report, load_sequences, run_main, truth_box


def run_sequence(sequence: Sequence, base_name: str, lost_iou: float, low_score: float) -> dict[str, Any]:
    """Frame counts (frame 1, the initialisation, and frames without a visible target excluded)."""
    frames = [read_image(f) for f in sequence.frames]
    tracker = build_tracker(base_name)
    tracker.initialize(frames[0], Box.from_any(sequence.ground_truth[0]))
    visible = lost = low = lost_and_low = 0
    for index in range(1, len(frames)):
        result = tracker.track(frames[index])
        truth = truth_box(sequence, index)
        if truth is None:
            continue
        visible += 1
        is_lost = result.box is None or result.box.iou(truth) < lost_iou
        is_low = result.score is None or result.score < low_score
        lost += is_lost
        low += is_low
        lost_and_low += is_lost and is_low
    return {"visible_frames": visible, "lost": lost, "low_score": low, "lost_with_low_score": lost_and_low}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = add_dataset_arguments(parser)
    parser.add_argument("--lost-iou", type=float, default=0.3, help="IoU under which the box has lost the target")
    parser.add_argument("--low-score", type=float, default=0.5, help="score under which the base is unsure "
                                                                     "(the wrapper's low_score)")
    args = parser.parse_args(argv)
    if not 0.0 < args.lost_iou <= 1.0:
        raise InputError(f"--lost-iou must be in (0, 1], got {args.lost_iou}")
    sequences = load_sequences(args, data)
    rows = {s.name: run_sequence(s, args.base, args.lost_iou, args.low_score)
            for s in tqdm(sequences, desc="sequences", unit="seq", disable=args.no_progress)}
    total = {key: sum(r[key] for r in rows.values()) for key in ("visible_frames", "lost", "low_score",
                                                                  "lost_with_low_score")}
    report = {"dataset": args.dataset, "base": args.base, "lost_iou": args.lost_iou, "low_score": args.low_score,
              "sequences": rows, "total": total}
    print(f"{'sequence':<24} {'visible':>7} {'lost':>6} {'low score':>9} {'lost+low':>8}")
    for name, r in [*rows.items(), ("total", total)]:
        print(f"{name:<24} {r['visible_frames']:>7} {r['lost']:>6} {r['low_score']:>9} {r['lost_with_low_score']:>8}")
    emit_report(report, args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
