"""Benchmark (analysis only): how much could a wrapper that corrects its base every K frames give at most?

The fusion module acts on grounding rounds, every ``ground_every`` (10) frames. ``bench/fusion.py``'s
oracle bounds what *switching* to one of a round's candidates can give. This bounds any correction at
those frames: the base tracker is re-initialised on the ground-truth box every ``--every`` frames (the
output of that frame is still the base's own box), next to the base alone; both scored by the official
protocol. Where the bound is far above the oracle, the gain is lost to the precision of the boxes the
candidates have, not to finding the target (a re-initialisation on a box less exact than the base's
own costs more than it gives). It reads the ground truth: never a result to report as a tracker's.

    uv run python bench/correction_bound.py                            # the 15 development sequences
    uv run python bench/correction_bound.py --base csrt --every 10 --json bound.json
    uv run python bench/correction_bound.py --keep-template            # correct the box, keep the template

``--keep-template`` moves the base to the truth without re-templating it
(``chattracker.fusion.retarget``): how much of the bound is the box and how much the new template.
``--to-own-box`` re-initialises on the base's own box, its template kept: a correction that corrects
nothing, whose AUC change is what re-initialising alone does (with ``--keep-template`` only).

Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from tqdm import tqdm

from chattracker.errors import InputError
from chattracker.fusion.retarget import template_preserving_frame
from chattracker.types import Box
from chattracker.video import read_image
from chattracker_eval.datasets.base import Sequence
from chattracker_eval.protocols import OfficialProtocol, score_sequence
from chattracker_trackers.base import build_tracker

# bench/ is the script's folder, first on sys.path
from _cli import add_dataset_arguments, emit_report, load_sequences, run_main, truth_box


def run_sequence(sequence: Sequence, base_name: str, every: int, progress: bool, keep_template: bool = False,
                 own_box: bool = False) -> dict[str, Any]:
    """AUCs (official protocol, %) of the base alone and re-initialised on the truth (``own_box``: on its
    own box) every ``every`` frames, with a new template or (``keep_template``) its first one."""
    frames = [read_image(f) for f in sequence.frames]
    init = Box.from_any(sequence.ground_truth[0])
    alone, corrected = build_tracker(base_name), build_tracker(base_name)
    alone.initialize(frames[0], init)
    corrected.initialize(frames[0], init)
    nan = [float("nan")] * 4
    boxes: dict[str, list[list[float]]] = {"base": [init.to_list()], "bound": [init.to_list()]}
    corrections = 0
    for index in tqdm(range(1, len(frames)), desc=sequence.name, unit="frame", disable=not progress, leave=False):
        for kind, tracker in (("base", alone), ("bound", corrected)):
            result = tracker.track(frames[index])
            boxes[kind].append(result.box.to_list() if result.box is not None else nan)
        truth = truth_box(sequence, index) if index % every == 0 else None
        if own_box and truth is not None:
            own = boxes["bound"][-1]
            truth = Box.from_any(own) if np.all(np.isfinite(own)) and own[2] > 0 and own[3] > 0 else None
        if truth is not None:
            frame = frames[index]
            if keep_template:
                frame = template_preserving_frame(frame, truth, frames[0], init)
            corrected.initialize(frame, truth)
            corrections += 1
    scores = {kind: 100 * score_sequence(OfficialProtocol(), np.asarray(b, dtype=float), sequence.ground_truth,
                                         sequence.absent).auc for kind, b in boxes.items()}
    return {"frames": len(frames), "corrections": corrections, "base_auc": scores["base"], "bound_auc": scores["bound"],
            "delta_auc": scores["bound"] - scores["base"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = add_dataset_arguments(parser)
    parser.add_argument("--every", type=int, default=10, help="frames between corrections (default 10, the "
                                                                  "wrapper's ground_every)")
    parser.add_argument("--keep-template", action="store_true",
                        help="move the base to the box without re-templating it (its first-frame template kept)")
    parser.add_argument("--to-own-box", action="store_true",
                        help="re-initialise on the base's own box, not the truth (needs --keep-template): "
                             "what re-initialising alone does")
    args = parser.parse_args(argv)
    if args.every < 1:
        raise InputError(f"--every must be >= 1, got {args.every}")
    if args.to_own_box and not args.keep_template:
        raise InputError("--to-own-box needs --keep-template (on its own box with a new template it re-templates "
                         "the tracker every --every frames)")
    sequences = load_sequences(args, data)
    rows = {s.name: run_sequence(s, args.base, args.every, not args.no_progress, args.keep_template, args.to_own_box)
            for s in tqdm(sequences, desc="sequences", unit="seq", disable=args.no_progress)}
    deltas = [r["delta_auc"] for r in rows.values()]
    mean = {"base_auc": float(np.mean([r["base_auc"] for r in rows.values()])),
            "bound_auc": float(np.mean([r["bound_auc"] for r in rows.values()])),
            "sequences_up_2": sum(d >= 2.0 for d in deltas)}
    report = {"protocol": "official", "dataset": args.dataset, "base": args.base, "every": args.every,
              "keep_template": args.keep_template, "to_own_box": args.to_own_box,
              "sequences": rows, "mean": mean}
    print(f"{'sequence':<24} {'frames':>6} {'AUC base':>9} {'AUC bound':>9} {'dAUC':>7}")
    for name, r in rows.items():
        print(f"{name:<24} {r['frames']:>6} {r['base_auc']:>9.2f} {r['bound_auc']:>9.2f} {r['delta_auc']:>+7.2f}")
    print(f"{'mean':<24} {'':>6} {mean['base_auc']:>9.2f} {mean['bound_auc']:>9.2f} "
          f"{mean['bound_auc'] - mean['base_auc']:>+7.2f}")
    emit_report(report, args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
