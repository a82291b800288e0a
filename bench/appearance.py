"""Benchmark: which appearance embedding tells the target from same-class distractors, and at what cost.

On every ``--step``-th frame of each sequence the detector runs on a zoomed region around the
ground-truth box (4x its size, at least 256 px). The detection that overlaps the ground truth (IoU >=
0.5) is a *target* crop; detections with IoU < 0.3 are *distractor* crops, *same-class* when their
COCO label is the target detection's. Both sides are detector boxes, as verification sees them.
Each crop is scored by cosine similarity to the embedding of the frame-1 ground-truth box; the
ROC AUC of target vs distractor scores says how well an embedding separates them (0.5: chance).

    uv run python bench/appearance.py                       # the 15 development sequences
    uv run python bench/appearance.py --models nanotrack,mobilenetv2 --step 5

Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from chattracker.fusion.embedding import build_embedder
from chattracker.fusion.semantic import search_region
from chattracker.grounding.base import build_grounder
from chattracker.types import Box
from chattracker.video import read_image
from chattracker_eval.datasets import load_dataset

from _cli import emit_report, run_main, truth_box  # bench/ is the script's folder, first on sys.path


def roc_auc(positives: list[float], negatives: list[float]) -> float | None:
    """Probability that a random target crop scores above a random distractor crop (ties count half)."""
    if not positives or not negatives:
        return None
    pos, neg = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def gather_crops(sequence, detector, step: int) -> list[tuple[int, Box, str]]:
    """``(frame index, box, role)`` with role ``target``, ``same_class`` or ``other``."""
    crops: list[tuple[int, Box, str]] = []
    for index in range(step, len(sequence), step):
        truth = truth_box(sequence, index)
        if truth is None:
            continue
        frame = read_image(sequence.frames[index])
        region = search_region(truth, frame.shape[1], frame.shape[0], 4.0, 256.0)
        x1, y1, x2, y2 = (int(round(v)) for v in region.to_xyxy())
        found = detector.detect(np.ascontiguousarray(frame[y1:y2, x1:x2]))
        boxes = [Box(b.x + x1, b.y + y1, b.w, b.h) for b in (found.box(i) for i in range(len(found)))]
        overlaps = [b.iou(truth) for b in boxes]
        if not boxes or max(overlaps) < 0.5:
            continue
        best = int(np.argmax(overlaps))
        crops.append((index, boxes[best], "target"))
        for box, overlap, label in zip(boxes, overlaps, found.labels):
            if overlap < 0.3:
                crops.append((index, box, "same_class" if label == found.labels[best] else "other"))
    return crops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = os.environ.get("CHATTRACKER_SHARED_DATA", "../shared/data")
    parser.add_argument("--dataset", default="fusion_dev")
    parser.add_argument("--root", default=data)
    parser.add_argument("--models", default="nanotrack,mobilenetv2,osnet,hsv_hog")
    parser.add_argument("--step", type=int, default=10, help="every step-th frame is sampled")
    parser.add_argument("--json", help="also write the JSON report here")
    args = parser.parse_args(argv)
    os.environ.setdefault("CHATTRACKER_WEIGHTS", data)

    detector = build_grounder("yolox")
    models = {name: build_embedder(name) for name in args.models.split(",")}
    sequences = load_dataset(args.dataset, args.root).sequences
    per_sequence: dict[str, Any] = {}
    pooled: dict[str, dict[str, list[float]]] = {m: {"target": [], "same_class": [], "other": []} for m in models}
    seconds = {m: 0.0 for m in models}
    crops_embedded = 0
    for sequence in tqdm(sequences, desc="sequences", unit="seq"):
        crops = gather_crops(sequence, detector, args.step)
        first = read_image(sequence.frames[0])
        reference = Box.from_any(sequence.ground_truth[0])
        row: dict[str, Any] = {"target": sum(r == "target" for _, _, r in crops),
                               "same_class": sum(r == "same_class" for _, _, r in crops),
                               "other": sum(r == "other" for _, _, r in crops)}
        by_frame: dict[int, list[tuple[Box, str]]] = {}
        for index, box, role in crops:
            by_frame.setdefault(index, []).append((box, role))
        for name, model in models.items():
            anchor = model.embed(first, [reference])[0]
            scores: dict[str, list[float]] = {"target": [], "same_class": [], "other": []}
            for index, items in by_frame.items():
                frame = read_image(sequence.frames[index])
                started = time.perf_counter()
                vectors = model.embed(frame, [b for b, _ in items])
                seconds[name] += time.perf_counter() - started
                for (_, role), vector in zip(items, vectors):
                    scores[role].append(float(vector @ anchor))
            for role in scores:
                pooled[name][role].extend(scores[role])
            row[name] = {"same_class_auc": roc_auc(scores["target"], scores["same_class"]),
                         "all_auc": roc_auc(scores["target"], scores["same_class"] + scores["other"])}
        crops_embedded += len(crops)
        per_sequence[sequence.name] = row

    summary = {}
    for name in models:
        same = [r[name]["same_class_auc"] for r in per_sequence.values() if r[name]["same_class_auc"] is not None]
        summary[name] = {"same_class_auc_pooled": roc_auc(pooled[name]["target"], pooled[name]["same_class"]),
                         "same_class_auc_mean_over_sequences": float(np.mean(same)) if same else None,
                         "sequences_with_same_class": len(same),
                         "all_auc_pooled": roc_auc(pooled[name]["target"], pooled[name]["same_class"] + pooled[name]["other"]),
                         "ms_per_crop": 1000 * seconds[name] / max(crops_embedded, 1)}
    print(f"{'sequence':<22} {'target':>6} {'same':>5} {'other':>5}" + "".join(f" {m[:11]:>11}" for m in models)
          + "   (same-class ROC AUC)")
    for seq, row in per_sequence.items():
        cells = "".join(f" {row[m]['same_class_auc']:>11.3f}" if row[m]["same_class_auc"] is not None else f" {'-':>11}"
                        for m in models)
        print(f"{seq:<22} {row['target']:>6} {row['same_class']:>5} {row['other']:>5}{cells}")
    for key in ("same_class_auc_mean_over_sequences", "same_class_auc_pooled", "all_auc_pooled", "ms_per_crop"):
        print(f"{key:<40}" + "".join(f" {summary[m][key]:>11.3f}" for m in models))
    report = {"dataset": args.dataset, "step": args.step, "sequences": per_sequence, "models": summary}
    emit_report(report, args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
