"""Fit the fusion model: "is this candidate the target?" from what the pipeline measures, and the path's
switching cost, decay and unseen value.

Inputs are the per-round candidate records that ``bench/fusion.py`` collects (``<out>/<base>/collect/
<sequence>.json``: features in ``FEATURES`` order and the IoU of each candidate with the ground truth,
from two runs: one that never leaves the base tracker, and the oracle, which re-initialises the base on
the best candidate every round and so holds the moments a base starts to drift). Labels: IoU >= 0.5.
The scorer is a logistic regression (scikit-learn, bench-only); the path settings are the grid point
whose offline replay of the training sequences' rounds (each run replayed on its own) gives the best
mean IoU of the chosen candidate. ``fit`` is what
``bench/fusion.py --folds`` calls per fold; ``main`` fits on every collected sequence and writes the
bundled parameter file with its manifest.

    uv run python bench/fusion_train.py --collected runs/bench_fusion --bases nanotrack_v2,csrt \\
        --report docs/results/fusion_cv_nanotrack_v2.json --report docs/results/fusion_cv_csrt.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from chattracker.fusion.features import FEATURES
from chattracker.fusion.path import TrackletPath
from chattracker.fusion.target_model import BUNDLED, LinearScorer, TargetModel, save_model

from _cli import run_main  # bench/ is the script's folder, first on sys.path

logger = logging.getLogger("bench.fusion_train")
POSITIVE_IOU = 0.5
REGULARISATION = 0.5  # inverse L2 strength of the logistic regression (scikit-learn's C)
SWITCH_COSTS = (0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0)  # (first run: 6, the top of 0.5-6, won most folds)
DECAYS = (0.5, 0.7, 0.85, 1.0)
UNSEEN = (-2.0, -1.0, 0.0)


def load_collected(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Sequence name -> its rounds (each: candidates with identity, features, iou)."""
    return {path.stem: json.loads(path.read_text())["rounds"] for path in sorted(folder.glob("*.json"))}


def streams(rounds: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """A sequence's rounds split by the run (policy) that produced them, each in frame order."""
    by_policy: dict[str, list[dict[str, Any]]] = {}
    for record in rounds:
        by_policy.setdefault(record.get("policy", "collect"), []).append(record)
    return list(by_policy.values())


def design(rounds_by_sequence: dict[str, list[dict[str, Any]]]) -> tuple[np.ndarray, np.ndarray]:
    rows, labels = [], []
    for rounds in rounds_by_sequence.values():
        for record in rounds:
            for candidate in record["candidates"]:
                rows.append(candidate["features"])
                labels.append(candidate["iou"] >= POSITIVE_IOU)
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURES)), np.asarray(labels, dtype=bool)


def fit_scorer(rounds_by_sequence: dict[str, list[dict[str, Any]]]) -> LinearScorer:
    """Logistic regression on standardised features (constant columns keep scale 1)."""
    from sklearn.linear_model import LogisticRegression

    features, labels = design(rounds_by_sequence)
    if labels.all() or not labels.any():
        raise ValueError("the training rounds need both candidates that are the target and candidates that are not")
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-9] = 1.0
    model = LogisticRegression(C=REGULARISATION, max_iter=2000)
    model.fit((features - mean) / scale, labels)
    return LinearScorer(mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0]))


def replay(rounds: list[dict[str, Any]], scorer: LinearScorer, path: TrackletPath) -> tuple[float, float]:
    """Offline replay of one sequence's rounds: (mean IoU of the path's choice, of the base box)."""
    chosen_iou, base_iou = [], []
    for index, record in enumerate(rounds):
        candidates = record["candidates"]
        if not candidates:
            continue
        if index == 0 or path.state is None:
            path.reset(candidates[0]["identity"])
        logits = scorer.logits(np.asarray([c["features"] for c in candidates], dtype=np.float64))
        evidence: dict[int, float] = {}
        for candidate, logit in zip(candidates, logits):
            evidence[candidate["identity"]] = max(evidence.get(candidate["identity"], -np.inf), float(logit))
        state = path.update(evidence, set(record.get("alive", [])) | set(evidence))
        picked = [(logit, c) for c, logit in zip(candidates, logits) if c["identity"] == state]
        best = max(picked, key=lambda pair: pair[0], default=None)
        chosen = best[1] if best is not None else candidates[0]  # as the selector: no pick keeps the base box
        chosen_iou.append(chosen["iou"])
        base_iou.append(candidates[0]["iou"])
    return float(np.mean(chosen_iou)) if chosen_iou else 0.0, float(np.mean(base_iou)) if base_iou else 0.0


def choose_path(rounds_by_sequence: dict[str, list[dict[str, Any]]], scorer: LinearScorer) -> dict[str, float]:
    """The grid point with the best mean (over sequences) replayed IoU; ties go to the larger switching
    cost (the more conservative path)."""
    best: tuple[float, float] | None = None
    chosen: dict[str, float] = {}
    for cost, decay, unseen in itertools.product(SWITCH_COSTS, DECAYS, UNSEEN):
        gains = [replay(stream, scorer, TrackletPath(cost, decay, unseen))[0]
                 for rounds in rounds_by_sequence.values() for stream in streams(rounds)]
        key = (round(float(np.mean(gains)), 6), cost)
        if best is None or key > best:
            best, chosen = key, {"switch_cost": cost, "decay": decay, "unseen": unseen}
    return chosen


def fit(collected: dict[str, dict[str, list[dict[str, Any]]]]) -> TargetModel:
    """One scorer per base (``collected``: base -> sequence -> rounds) and a ``default`` one on all bases
    pooled; the path settings are chosen on the pooled rounds with the pooled scorer."""
    pooled = {f"{base}/{name}": rounds for base, sequences in collected.items() for name, rounds in sequences.items()}
    scorers = {base: fit_scorer(sequences) for base, sequences in collected.items()}
    scorers["default"] = fit_scorer(pooled)
    settings = choose_path(pooled, scorers["default"])
    return TargetModel(scorers, settings["switch_cost"], settings["decay"], settings["unseen"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collected", default="runs/bench_fusion", help="bench/fusion.py's --out folder")
    parser.add_argument("--bases", default="nanotrack_v2,csrt", help="comma-separated base trackers to fit")
    parser.add_argument("--report", action="append", default=[], help="a bench/fusion.py --folds JSON whose "
                        "cross-validated scores go into the manifest (one per base)")
    parser.add_argument("--out", default=str(BUNDLED), help="parameter file to write (default: the bundled one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    collected = {}
    for base in [b.strip() for b in args.bases.split(",") if b.strip()]:
        folder = Path(args.collected) / base / "collect"
        sequences = load_collected(folder)  # the demo scene's training seeds included (DemoScene_seed*)
        if not sequences:
            raise SystemExit(f"bench: error: no collected rounds in {folder} (run bench/fusion.py --folds first)")
        collected[base] = sequences
    model = fit(collected)
    scores = {}
    for report in args.report:
        data = json.loads(Path(report).read_text())
        scores[data["base"]] = {"folds": data.get("folds"), "mean": data["mean"], "command": data.get("command")}
    manifest = {"trained_on": {base: sorted(s) for base, s in collected.items()},
                "positive_iou": POSITIVE_IOU, "regularisation": REGULARISATION,
                "path": {"switch_cost": model.switch_cost, "decay": model.decay, "unseen": model.unseen},
                "cross_validated": scores, "written_by": "bench/fusion_train.py"}
    digest = save_model(model, args.out, manifest)
    print(json.dumps({"out": args.out, "sha256": digest, **manifest["path"],
                      "sequences": {b: len(s) for b, s in collected.items()}}))
    return 0


if __name__ == "__main__":
    run_main(main)
