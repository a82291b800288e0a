"""Benchmark: does a sentence alone find the target on frame 1 (the language start of `track --text`)?

Sequences with sentences: Woman and airplane-1 (their benchmarks' own) and the 11 sot_dev sequences with
the sentences of ``configs/sot_dev_sentences.yaml`` (written by looking at frame 1). Per sequence: the
chosen box's IoU with the ground truth, whether it is credible, the reading that found it, the time.

    uv run python bench/language_start.py
    uv run python bench/language_start.py --data ../shared/data --iou 0.5

Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from chattracker.language_start import NoTargetFound, build_language_start, find_target
from chattracker.types import Box
from chattracker.video import read_image
from chattracker_eval.datasets import load_dataset

REPO = Path(__file__).resolve().parents[1]


def sequences(data: Path) -> list[tuple[str, object]]:
    """(sentence, Sequence) pairs: the benchmarks' own sentences, then sot_dev with the written ones."""
    woman = load_dataset("otb", data / "otb_woman_lang").sequences["Woman"]
    airplane = load_dataset("lasot", data / "lasot_airplane-1_clip600", split="all").sequences["airplane-1"]
    written = yaml.safe_load((REPO / "configs/sot_dev_sentences.yaml").read_text())
    dev = load_dataset("folder", data / "sot_dev").sequences
    return [(woman.language, woman), (airplane.language, airplane), *((written[s.name], s) for s in dev)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--iou", type=float, default=0.5)
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "sot_dev").is_dir():
        print(f"bench: error: {data} has no sot_dev folder (give --data)", file=sys.stderr)
        return 2
    config, grounder, describer = build_language_start({})
    rows = []
    for sentence, sequence in sequences(data):
        first = read_image(sequence.frames[0])
        later = read_image(sequence.frames[min(config.motion_gap, len(sequence.frames) - 1)])
        truth = Box.from_any(sequence.ground_truth[0])
        tick = time.perf_counter()
        try:
            start = find_target(first, sentence, grounder, config, describer, later, require_credible=False)
            iou, credible, reading, why = start.target.box.iou(truth), start.credible, start.target.reading, start.target.why()
            rank = next((r for r, c in enumerate(start.candidates, 1) if c.box.iou(truth) >= args.iou), None)
        except NoTargetFound as error:
            iou, credible, reading, why, rank = 0.0, False, "-", str(error).split(": ", 1)[1][:90], None
        rows.append({"sequence": sequence.name, "sentence": sentence, "iou": round(iou, 4), "hit": iou >= args.iou,
                     "credible": credible, "target_rank": rank, "reading": reading, "why": why,
                     "seconds": round(time.perf_counter() - tick, 3)})
    print(f"{'sequence':<22} {'IoU':>5} {'hit':>4} {'cred':>5} {'rank':>4} {'s':>5}  sentence | why")
    for row in rows:
        print(f"{row['sequence'][:22]:<22} {row['iou']:>5.2f} {'yes' if row['hit'] else 'no':>4} "
              f"{'yes' if row['credible'] else 'no':>5} {row['target_rank'] or '-':>4} {row['seconds']:>5.2f}  "
              f"{row['sentence']!r} | {row['why']}")
    dev = [r for r in rows[2:]]
    print(f"hits: benchmark sentences {sum(r['hit'] for r in rows[:2])}/2, sot_dev {sum(r['hit'] for r in dev)}/{len(dev)}")
    print(json.dumps({"iou": args.iou, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
