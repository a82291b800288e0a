"""Benchmark: does the fusion module earn its place? A base tracker against ChatTracker around it.

The base, the wrapper and (for the upper bound the proposals allow) the wrapper with the ``oracle``
selection see the same decoded frames, interleaved frame by frame, so the machine's load affects
them alike and the throughput ratio is fair. Results are written as official result files (``nan``
rows where the wrapper reported the target absent) and scored from those files by the official
LaSOT/TNL2K protocol. Ground truth is used only after the fact: proposal recall (was the target among
a grounding round's candidates), switches made / undone / helped / hurt, box area against the truth's.

With ``--folds K`` everything fitted is judged by cross-validation by sequence: a first pass collects
every grounding round's candidates from a wrapper that never leaves the base (and runs the oracle); then
for each of K folds (0: leave one sequence out) the model is fitted on the other folds' rounds
(``bench/fusion_train.py``) and the fold's sequences are run with parameters that never saw them.

    uv run python bench/fusion.py --folds 0                        # the 26 development sequences, LOO
    uv run python bench/fusion.py --folds 0 --base csrt            # plug-and-play: another base
    uv run python bench/fusion.py                                  # the shipped model, no fitting
    uv run python bench/fusion.py --dataset lasot --root /data/LaSOT --sequences airplane-1
    uv run python bench/fusion.py --set ground_every=5 --no-oracle # an ablation

The development set is 26 sequences when ``CHATTRACKER_SOT_DEV_EXTRA`` names the built
``sot_dev_extra`` folder (15 otherwise, with a warning). Prints a table, then one JSON object (also
written to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from chattracker.config import load_yaml
from chattracker.results import write_boxes, write_times
from chattracker.types import Box
from chattracker.video import read_image
from chattracker.wrapper import ChatTracker, build_chattracker
from chattracker_eval.datasets import load_dataset
from chattracker_eval.datasets.base import Sequence
from chattracker_eval.metrics import average_official
from chattracker_eval.protocols import OfficialProtocol, score_sequence
from chattracker_eval.scoring import read_result
from chattracker_trackers.base import build_tracker

from _cli import emit_report, machine_info, run_main, truth_box  # bench/ is the script's folder, first on sys.path
from fusion_train import fit

logger = logging.getLogger("bench.fusion")
KINDS = ("base", "chattracker", "oracle")
RECALL_IOU = 0.5  # a candidate "is" the target at this IoU with the ground truth


def round_analysis(sequence: Sequence, index: int, info: dict[str, Any], box: Box | None) -> dict[str, Any] | None:
    """What one grounding round offered and did, judged by the ground truth (analysis only)."""
    record = info.get("round")
    if not record:
        return None
    truth = truth_box(sequence, index)
    sources = sorted({c["source"] for c in record["candidates"] if truth is not None
                      and Box.from_any(c["box"]).iou(truth) >= RECALL_IOU})
    base_box = info.get("base_box")
    before = 0.0 if truth is None or base_box is None else Box.from_any(base_box).iou(truth)
    after = 0.0 if truth is None or box is None else box.iou(truth)
    return {"frame": index + 1, "present": truth is not None, "found_by": sources, "kind": record["kind"],
            "changed": record["kind"] not in ("kept", "confirmed"), "before": before, "after": after}


def collect_round(sequence: Sequence, index: int, info: dict[str, Any]) -> dict[str, Any] | None:
    """A round's candidates as training rows: identity, features and IoU with the ground truth."""
    record = info.get("round")
    if not record:
        return None
    truth = truth_box(sequence, index)
    return {"frame": index + 1, "candidates": [
        {"identity": c["identity"], "features": c["features"],
         "iou": 0.0 if truth is None else Box.from_any(c["box"]).iou(truth)} for c in record["candidates"]]}


def area_ratio(boxes: list[list[float]], sequence: Sequence) -> float | None:
    """Mean of predicted over true box area, over the frames where both exist (box precision)."""
    ratios = []
    for index, row in enumerate(boxes[1:], start=1):
        truth = truth_box(sequence, index)
        if truth is not None and np.all(np.isfinite(row)) and truth.area > 0:
            ratios.append(Box.from_any(row).area / truth.area)
    return float(np.mean(ratios)) if ratios else None


def switch_counts(events: list[dict[str, Any]], rounds: list[dict[str, Any]]) -> dict[str, int]:
    """Switches of tracklet made, undone (back to the tracklet a switch left), helped and hurt (the
    round's output against the base box's IoU, 0.05 either way)."""
    switches = [e for e in events if e["event"] == "reinitialize"]
    left = set()
    undone = 0
    for event in switches:
        undone += event.get("to") in left
        left.add(event.get("from"))
    recovered = [r for r in rounds if r["kind"] == "recovered"]
    return {"made": len(switches), "undone": undone,
            "helped": sum(r["after"] > r["before"] + 0.05 for r in recovered),
            "hurt": sum(r["after"] < r["before"] - 0.05 for r in recovered)}


def run_sequence(sequence: Sequence, base_name: str, trackers_settings: dict[str, dict[str, Any]],
                 out: Path, progress: bool, init: Box | None = None, collect: tuple[str, ...] = ()) -> dict[str, Any]:
    """Track ``sequence`` with the base and each wrapper of ``trackers_settings`` (kind -> fusion
    settings), interleaved, all started from ``init`` (default: the first ground-truth box).
    ``collect``: the kinds whose rounds are kept as training rows."""
    frames = [read_image(f) for f in sequence.frames]  # decoded up front: not timed
    init = init if init is not None else Box.from_any(sequence.ground_truth[0])
    text = sequence.language or None
    trackers: dict[str, Any] = {"base": build_tracker(base_name)}
    for kind, settings in trackers_settings.items():
        trackers[kind] = build_chattracker(build_tracker(base_name), settings)
        if settings.get("selection") == "oracle":
            trackers[kind].set_ground_truth(sequence.ground_truth)  # analysis only
    boxes = {k: [init.to_list()] for k in trackers}
    times = {k: [0.0] for k in trackers}
    rounds: list[dict[str, Any]] = []
    collected: list[dict[str, Any]] = []
    nan = [float("nan")] * 4
    for kind, tracker in trackers.items():
        started = time.perf_counter()
        tracker.initialize(frames[0], init, text)
        times[kind][0] = time.perf_counter() - started
    for index in tqdm(range(1, len(frames)), desc=sequence.name, unit="frame", disable=not progress, leave=False):
        for kind, tracker in trackers.items():
            started = time.perf_counter()
            result = tracker.track(frames[index])
            times[kind].append(time.perf_counter() - started)
            boxes[kind].append(result.box.to_list() if result.box is not None else nan)
            if kind == "chattracker":
                analysed = round_analysis(sequence, index, result.info, result.box)
                if analysed is not None:
                    rounds.append(analysed)
            if kind in collect:
                record = collect_round(sequence, index, result.info)
                if record is not None:
                    record["alive"] = sorted(tracker.tracklets.alive())
                    record["policy"] = kind
                    collected.append(record)
    row: dict[str, Any] = {"frames": len(frames), "text": text}
    if "chattracker" in trackers:
        wrapped: ChatTracker = trackers["chattracker"]
        row.update({"descriptions": wrapped.description_log(), "grounding_rounds": wrapped.grounding_rounds,
                    "grounding_ms": round(1000 * wrapped.grounding_seconds / max(wrapped.grounding_rounds, 1), 1),
                    "events": wrapped.events, **summarise_rounds(rounds),
                    "switches": switch_counts(wrapped.events, rounds)})
    if collect:
        row["collected"] = collected
    for kind in trackers:
        folder = out / kind
        write_boxes(folder / f"{sequence.name}.txt", boxes[kind])
        write_times(folder / f"{sequence.name}_time.txt", times[kind])
        # Scored from the written file, as any toolkit would read it.
        curves = score_sequence(OfficialProtocol(), read_result(folder / f"{sequence.name}.txt"),
                                sequence.ground_truth, sequence.absent)
        tracked = sum(times[kind][1:])
        row[kind] = {"auc": 100 * curves.auc, "precision": 100 * curves.precision_at_20,
                     "fps": (len(frames) - 1) / max(tracked, 1e-9), "seconds": tracked,
                     "init_seconds": times[kind][0], "area_ratio": area_ratio(boxes[kind], sequence),
                     "curves": curves}
    if "chattracker" in trackers:
        row["fps_ratio"] = row["chattracker"]["fps"] / max(row["base"]["fps"], 1e-9)
        row["delta_auc"] = row["chattracker"]["auc"] - row["base"]["auc"]
    return row


def summarise_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    present = [r for r in rounds if r["present"]]
    by_source: Counter[str] = Counter(s for r in present for s in r["found_by"])
    decisions: dict[str, dict[str, int]] = {}
    for r in rounds:
        entry = decisions.setdefault(r["kind"], {"count": 0, "helped": 0, "hurt": 0})
        entry["count"] += 1
        if r["changed"]:
            entry["helped"] += r["after"] > r["before"] + 0.05
            entry["hurt"] += r["after"] < r["before"] - 0.05
    return {"proposal_recall": sum(bool(r["found_by"]) for r in present) / max(len(present), 1),
            "recall_by_source": {s: n / max(len(present), 1) for s, n in sorted(by_source.items())},
            "decisions": decisions}


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"bench: --set expects key=value, got {pair!r}")
        settings[key.strip()] = yaml.safe_load(value)
    return settings


def mean_auc(rows: dict[str, dict[str, Any]], kind: str, names: list[str]) -> float:
    return 100 * average_official([rows[n][kind]["curves"] for n in names]).curves.auc


def summary(rows: dict[str, dict[str, Any]], kinds: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    names = list(rows)
    for kind in kinds:
        average = average_official([rows[n][kind]["curves"] for n in names]).curves
        seconds = sum(rows[n][kind]["seconds"] for n in names)
        frames = sum(rows[n]["frames"] - 1 for n in names)
        ratios = [rows[n][kind]["area_ratio"] for n in names if rows[n][kind].get("area_ratio") is not None]
        result[kind] = {"auc": 100 * average.auc, "precision": 100 * average.precision_at_20,
                        "fps": frames / max(seconds, 1e-9), "area_ratio": float(np.mean(ratios)) if ratios else None}
    result["fps_ratio"] = result["chattracker"]["fps"] / max(result["base"]["fps"], 1e-9)
    deltas = {n: r["delta_auc"] for n, r in rows.items()}
    result["delta_auc"] = result["chattracker"]["auc"] - result["base"]["auc"]
    best = max(deltas, key=deltas.get)
    rest = [n for n in names if n != best]
    result["best_sequence"] = best
    result["delta_auc_without_best"] = (mean_auc(rows, "chattracker", rest) - mean_auc(rows, "base", rest)) if rest else 0.0
    result["sequences_up_2"] = sum(d >= 2.0 for d in deltas.values())
    result["sequences_down_1"] = sum(d < -1.0 for d in deltas.values())
    result["better_same_worse"] = [sum(d > 0.005 for d in deltas.values()), sum(abs(d) <= 0.005 for d in deltas.values()),
                                   sum(d < -0.005 for d in deltas.values())]
    result["worst_delta"] = min(deltas.values())
    result["proposal_recall"] = float(np.mean([r["proposal_recall"] for r in rows.values()]))
    result["switches"] = {k: sum(r["switches"][k] for r in rows.values()) for k in ("made", "undone", "helped", "hurt")}
    if "oracle" in kinds:
        # Choosing the best candidate every round: the upper bound the proposals allow (greedy per round).
        result["oracle_delta_auc"] = result["oracle"]["auc"] - result["base"]["auc"]
        result["oracle_sequences_up_2"] = sum(r["oracle"]["auc"] - r["base"]["auc"] >= 2.0 for r in rows.values())
        result["oracle_share_captured"] = (result["delta_auc"] / result["oracle_delta_auc"]
                                           if result["oracle_delta_auc"] > 0 else None)
    return result


def print_table(rows: dict[str, dict[str, Any]], totals: dict[str, Any], kinds: list[str]) -> None:
    head = f"{'sequence':<27} {'frames':>6}" + "".join(f" {'AUC ' + k[:5]:>10}" for k in kinds)
    head += f" {'dAUC':>6} {'area b':>6} {'area c':>6} {'recall':>6} {'fps b':>6} {'fps c':>6} {'ratio':>5}  switches"
    print(head)

    def area(value: float | None) -> str:
        return f"{value:>6.2f}" if value is not None else f"{'-':>6}"

    for name, r in rows.items():
        sw = r["switches"]
        print(f"{name:<27} {r['frames']:>6}" + "".join(f" {r[k]['auc']:>10.2f}" for k in kinds)
              + f" {r['delta_auc']:>+6.2f} {area(r['base']['area_ratio'])} {area(r['chattracker']['area_ratio'])}"
              f" {r['proposal_recall']:>6.2f} {r['base']['fps']:>6.1f} {r['chattracker']['fps']:>6.1f}"
              f" {r['fps_ratio']:>5.2f}  {sw['made']} made, {sw['undone']} undone, +{sw['helped']}/-{sw['hurt']}")
    print(f"{'mean':<27} {'':>6}" + "".join(f" {totals[k]['auc']:>10.2f}" for k in kinds)
          + f" {totals['delta_auc']:>+6.2f} {area(totals['base']['area_ratio'])} {area(totals['chattracker']['area_ratio'])}"
          f" {totals['proposal_recall']:>6.2f} {totals['base']['fps']:>6.1f} {totals['chattracker']['fps']:>6.1f}"
          f" {totals['fps_ratio']:>5.2f}")
    print(f"without the best sequence ({totals['best_sequence']}): dAUC {totals['delta_auc_without_best']:+.2f}; "
          f"better/same/worse {'/'.join(map(str, totals['better_same_worse']))}; worst {totals['worst_delta']:+.2f}")
    if "oracle_sequences_up_2" in totals:
        share = totals["oracle_share_captured"]
        print(f"oracle (best candidate every round): mean dAUC {totals['oracle_delta_auc']:+.2f}, "
              f"{totals['oracle_sequences_up_2']} of {len(rows)} sequences up by >= 2.0; share captured "
              + (f"{100 * share:.0f}%" if share is not None else "-"))


def fold_of(names: list[str], folds: int) -> dict[str, int]:
    """Sequence -> fold: round robin over the sorted names (0 folds: one sequence each)."""
    ordered = sorted(names)
    count = len(ordered) if folds <= 0 else min(folds, len(ordered))
    return {name: index % count for index, name in enumerate(ordered)}


def scene_sequences(seeds: list[int], folder: Path) -> list[Sequence]:
    """The demo's synthetic scene at other background seeds, written as a ``folder`` dataset (PNG frames;
    ``nan`` ground truth where no pixel of the target shows): training rows only, never reported. Real
    development video has no sentence whose colour tells the target from a look-alike; this scene does."""
    import cv2

    from chattracker.demo_scene import DemoScene

    for seed in seeds:
        target = folder / f"DemoScene_seed{seed}"
        if (target / "groundtruth.txt").is_file():
            continue
        scene = DemoScene(seed=seed)
        (target / "img").mkdir(parents=True, exist_ok=True)
        for index, frame in enumerate(scene):
            if not cv2.imwrite(str(target / "img" / f"{index + 1:08d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
                raise OSError(f"cannot write frames into {target / 'img'}")
        rows = [[float("nan")] * 4 if absent else box.to_list() for box, absent in zip(scene.ground_truth, scene.absent)]
        rows[0] = scene.ground_truth[0].to_list()
        write_boxes(target / "groundtruth.txt", rows)
    return list(load_dataset("folder", folder).sequences.select([f"DemoScene_seed{s}" for s in seeds]))


def collect_sequence(sequence: Sequence, args, settings: dict[str, Any], out: Path, oracle: bool) -> dict[str, Any]:
    """Pass one for a sequence: the rounds of a wrapper that never leaves the base and of the oracle,
    written to ``collect/<sequence>.json`` atomically."""
    plan = {"collect": {**settings, "selection": "base"}}
    if oracle:
        plan["oracle"] = {**settings, "selection": "oracle"}
    row = run_sequence(sequence, args.base, plan, out / "pass1", not args.no_progress, collect=tuple(plan))
    folder = out / "collect"
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{sequence.name}.json.partial"
    temporary.write_text(json.dumps({"sequence": sequence.name, "base": args.base, "rounds": row["collected"]}))
    os.replace(temporary, folder / f"{sequence.name}.json")
    return row


def cross_validate(sequences: list[Sequence], args, settings: dict[str, Any], out: Path, kinds: list[str],
                   extra_training: list[Sequence] = ()) -> dict[str, dict[str, Any]]:
    """Collect every sequence's rounds from a wrapper that never leaves the base and from the oracle
    (which re-initialises the base on the best candidate every round, so its rounds hold the moments a
    base starts to drift), then run each fold's sequences with a model fitted on the other folds only."""
    oracle: dict[str, dict[str, Any]] = {}
    rounds: dict[str, list[dict[str, Any]]] = {}
    for sequence in tqdm(sequences, desc="collect", unit="seq", disable=args.no_progress):
        row = collect_sequence(sequence, args, settings, out, "oracle" in kinds)
        rounds[sequence.name] = row["collected"]
        if "oracle" in kinds:
            oracle[sequence.name] = row["oracle"]
    extra = {s.name: collect_sequence(s, args, settings, out, True)["collected"] for s in extra_training}
    folds = fold_of([s.name for s in sequences], args.folds)
    rows: dict[str, dict[str, Any]] = {}
    from chattracker.fusion.target_model import save_model

    for fold in tqdm(sorted(set(folds.values())), desc="folds", unit="fold", disable=args.no_progress):
        training = {n: r for n, r in rounds.items() if folds[n] != fold}
        model = fit({args.base: {**training, **extra}})
        model_file = out / "folds" / f"fold{fold:02d}.json"
        save_model(model, model_file, {"trained_on": sorted(training), "fold": fold, "scene_seeds": sorted(extra)})
        for sequence in [s for s in sequences if folds[s.name] == fold]:
            row = run_sequence(sequence, args.base, {"chattracker": {**settings, "model": str(model_file)}}, out,
                               not args.no_progress)
            row["fold"] = {"index": fold, "switch_cost": model.switch_cost, "decay": model.decay,
                           "unseen": model.unseen, "trained_on": len(training)}
            if sequence.name in oracle:
                row["oracle"] = oracle[sequence.name]
            rows[sequence.name] = row
    return {name: rows[name] for name in sorted(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = os.environ.get("CHATTRACKER_SHARED_DATA", "../shared/data")
    parser.add_argument("--dataset", default="fusion_dev", help="any dataset the eval loaders read (default fusion_dev: "
                                                                "the development sequences)")
    parser.add_argument("--root", default=data, help="the dataset root (fusion_dev: the shared data folder)")
    parser.add_argument("--sequences", help="comma-separated subset, by name")
    parser.add_argument("--base", default="nanotrack_v2", help="registered base tracker (default nanotrack_v2)")
    parser.add_argument("--config", help="YAML tracker config whose 'chattracker' section gives the fusion settings "
                                         "(default: configs/chattracker.yaml's defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one fusion setting")
    parser.add_argument("--folds", type=int, default=None, metavar="K",
                        help="cross-validate by sequence: fit on the other folds, report each sequence with a model "
                             "that never saw it (0: leave one sequence out)")
    parser.add_argument("--train-scenes", default="1,2,3,4,5,6", metavar="SEEDS",
                        help="--folds: the demo scene at these background seeds joins every fold's training (never "
                             "reported; the demo itself is seed 7); empty: none")
    parser.add_argument("--no-oracle", action="store_true", help="skip the oracle run (faster)")
    parser.add_argument("--out", default="runs/bench_fusion", help="folder for the result files")
    parser.add_argument("--json", help="also write the JSON report here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.folds is not None and args.folds < 0:
        raise SystemExit("bench: error: --folds must be >= 0 (0: leave one sequence out)")

    os.environ.setdefault("CHATTRACKER_WEIGHTS", data)
    settings = dict(load_yaml(args.config).get("chattracker") or {}) if args.config else {}
    settings.update(parse_overrides(args.set))
    sequences = load_dataset(args.dataset, args.root).sequences
    if args.sequences:
        sequences = sequences.select([s.strip() for s in args.sequences.split(",") if s.strip()])
    sequences = list(sequences)
    out = Path(args.out) / args.base
    kinds = [k for k in KINDS if k != "oracle" or not args.no_oracle]
    machine = machine_info()
    if args.folds is not None:
        seeds = [int(v) for v in args.train_scenes.split(",") if v.strip()]
        scenes = scene_sequences(seeds, Path(args.out) / "scenes") if seeds else []
        rows = cross_validate(sequences, args, settings, out, kinds, scenes)
    else:
        plan = {"chattracker": settings}
        if "oracle" in kinds:
            plan["oracle"] = {**settings, "selection": "oracle"}
        rows = {s.name: run_sequence(s, args.base, plan, out, not args.no_progress)
                for s in tqdm(sequences, desc="sequences", unit="seq", disable=args.no_progress)}
    totals = summary(rows, kinds)
    for row in rows.values():
        for kind in kinds:
            row[kind].pop("curves")
    done = {"mean_auc_up_2": totals["delta_auc"] >= 2.0, "up_1_without_best": totals["delta_auc_without_best"] >= 1.0,
            "no_sequence_down_1": totals["worst_delta"] >= -1.0, "fps_ratio_0.6": totals["fps_ratio"] >= 0.6}
    report = {"protocol": "official", "dataset": args.dataset, "sequence_count": len(rows), "base": args.base,
              "wrapped": f"chattracker({args.base})", "settings": settings, "results": str(out),
              "folds": args.folds, "command": "python bench/fusion.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": machine, "sequences": rows, "mean": totals, "done_when": done}
    print(f"protocol: official; dataset {args.dataset} ({len(rows)} sequences); base {args.base}; "
          + (f"cross-validated, {args.folds or 'leave-one-out'} folds; " if args.folds is not None else "")
          + "AUC in %")
    print_table(rows, totals, kinds)
    emit_report(report, args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
