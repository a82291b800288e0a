"""Benchmark: a base tracker against the same tracker wrapped by ChatTracker, in one run.

Both trackers see the same frames, interleaved frame by frame, so the machine's load (shared CPUs)
affects both alike and the throughput ratio is fair. Results are written as official result files
(one ``x,y,w,h`` row per frame; ``nan`` where the wrapper reported the target absent) and scored from
those files by the official LaSOT/TNL2K protocol (``chattracker_eval``, DESIGN.md section 5).

    uv run python bench/fusion.py                      # the four real sequences, default settings
    uv run python bench/fusion.py --start 200          # unseen starts: initialise at frame 201
    uv run python bench/fusion.py --reverse            # unseen video: every sequence played backwards
    uv run python bench/fusion.py --set selection=oracle --set ground_every=5   # ablations
    uv run python bench/fusion.py --base csrt          # another base tracker

Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from chattracker.config import load_yaml
from chattracker.results import write_boxes, write_times
from chattracker.types import Box
from chattracker.video import list_images, read_image
from chattracker.wrapper import ChatTracker, build_chattracker
from chattracker_eval.metrics import average_official
from chattracker_eval.protocols import OfficialProtocol, score_sequence
from chattracker_eval.scoring import read_result
from chattracker_eval.textfile import read_boxes, read_flags, read_text
from chattracker_trackers.base import build_tracker

logger = logging.getLogger("bench.fusion")


@dataclass
class BenchSequence:
    name: str
    frames: list[Path]
    ground_truth: np.ndarray
    absent: np.ndarray
    language: str


def real_sequences(data: Path) -> list[BenchSequence]:
    """The four real sequences of the shared data (bag's polygons as axis-aligned boxes; LaSOT's
    absent = full occlusion or out of view)."""
    polygons = np.loadtxt(data / "vot15_bag/bag/groundtruth.txt", delimiter=",", ndmin=2)
    xs, ys = polygons[:, 0::2], polygons[:, 1::2]
    bag = np.stack([xs.min(1), ys.min(1), xs.max(1) - xs.min(1), ys.max(1) - ys.min(1)], axis=1)
    plane = data / "lasot_airplane-1_clip600/airplane/airplane-1"
    plane_truth = read_boxes(plane / "groundtruth.txt")
    plane_absent = (read_flags(plane / "full_occlusion.txt") > 0) | (read_flags(plane / "out_of_view.txt") > 0)
    crossing = read_boxes(data / "otb_crossing/Crossing/groundtruth_rect.txt")
    woman = read_boxes(data / "otb_woman_lang/Woman/groundtruth_rect.txt")
    items = [
        ("Crossing", data / "otb_crossing/Crossing/img", crossing, None, ""),
        ("Woman", data / "otb_woman_lang/Woman/img", woman, None, read_text(data / "otb_woman_lang/Woman/language.txt")),
        ("bag", data / "vot15_bag/bag/imgs", bag, None, ""),
        ("airplane-1", plane / "img", plane_truth, plane_absent, read_text(plane / "nlp.txt")),
    ]
    sequences = []
    for name, folder, truth, absent, language in items:
        files = list_images(folder)[: len(truth)]
        if len(files) != len(truth):
            raise SystemExit(f"bench: {name} has {len(files)} frames for {len(truth)} ground-truth rows")
        flags = np.zeros(len(truth), bool) if absent is None else np.asarray(absent, bool)[: len(truth)]
        sequences.append(BenchSequence(name, files, truth, flags, language))
    return sequences


def run_pair(sequence: BenchSequence, settings: dict[str, Any], start: int, use_text: bool,
             out: Path, progress: bool, base_name: str = "nanotrack_v2") -> dict[str, Any]:
    """Track ``sequence`` from frame ``start`` with the base and the wrapped tracker, interleaved."""
    frames = [read_image(f) for f in sequence.frames[start:]]  # decoded up front: not timed
    truth = sequence.ground_truth[start:]
    absent = sequence.absent[start:]
    text = sequence.language or None if use_text else None
    init = Box.from_any(truth[0])
    base = build_tracker(base_name)
    wrapped: ChatTracker = build_chattracker(build_tracker(base_name), settings)
    if wrapped.config.verification.selection == "oracle":
        wrapped.set_ground_truth(truth)  # analysis only: the oracle picks by ground truth
    base.initialize(frames[0], init, text)
    started = time.perf_counter()
    wrapped.initialize(frames[0], init, text)
    init_seconds = time.perf_counter() - started
    boxes = {"base": [init.to_list()], "chattracker": [init.to_list()]}
    times = {"base": [0.0], "chattracker": [init_seconds]}
    absent_reports = 0
    nan = [float("nan")] * 4
    for frame in tqdm(frames[1:], desc=sequence.name, unit="frame", disable=not progress, leave=False):
        started = time.perf_counter()
        result = base.track(frame)
        times["base"].append(time.perf_counter() - started)
        boxes["base"].append(result.box.to_list() if result.box is not None else nan)
        started = time.perf_counter()
        result = wrapped.track(frame)
        times["chattracker"].append(time.perf_counter() - started)
        boxes["chattracker"].append(result.box.to_list() if result.box is not None else nan)
        absent_reports += result.box is None
    row: dict[str, Any] = {"frames": len(frames), "start_frame": start + 1, "text": text,
                           "descriptions": [{"foreground": d.foreground, "background": d.background}
                                            for d in wrapped.descriptions],
                           "init_seconds": round(init_seconds, 3), "grounding_rounds": wrapped.grounding_rounds,
                           "grounding_ms": round(1000 * wrapped.grounding_seconds / max(wrapped.grounding_rounds, 1), 1),
                           "absent_reports": absent_reports, "events": wrapped.events}
    protocol = OfficialProtocol()
    for kind in ("base", "chattracker"):
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        write_boxes(folder / f"{sequence.name}.txt", boxes[kind])
        write_times(folder / f"{sequence.name}_time.txt", times[kind])
        # Scored from the written file, as any toolkit would read it.
        curves = score_sequence(protocol, read_result(folder / f"{sequence.name}.txt"), truth, absent)
        tracked = sum(times[kind][1:])
        row[kind] = {"auc": round(curves.auc, 4), "precision": round(curves.precision_at_20, 4),
                     "norm_precision": round(curves.norm_precision_at_02, 4),
                     "fps": round((len(frames) - 1) / max(tracked, 1e-9), 1), "seconds": round(tracked, 3),
                     "curves": curves}
    row["fps_ratio"] = round(row["chattracker"]["fps"] / max(row["base"]["fps"], 1e-9), 3)
    return row


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"bench: --set expects key=value, got {pair!r}")
        settings[key.strip()] = yaml.safe_load(value)
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("CHATTRACKER_SHARED_DATA", "../shared/data"),
                        help="the shared data folder (sequences and weights)")
    parser.add_argument("--config", help="YAML tracker config whose 'chattracker' section gives the fusion settings "
                                         "(default: the built-in defaults, as configs/chattracker.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one fusion setting")
    parser.add_argument("--base", default="nanotrack_v2", help="registered base tracker (default nanotrack_v2)")
    parser.add_argument("--sequences", help="comma-separated subset of Crossing,Woman,bag,airplane-1")
    parser.add_argument("--start", type=int, default=0, help="initialise at this 0-based frame (unseen-start check)")
    parser.add_argument("--reverse", action="store_true",
                        help="play every sequence backwards (from its last frame): a different video for an unseen check")
    parser.add_argument("--no-text", action="store_true", help="do not pass the sequences' language as initial text")
    parser.add_argument("--out", default="runs/bench_fusion", help="folder for the result files")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    data = Path(args.data)
    os.environ.setdefault("CHATTRACKER_WEIGHTS", str(data))
    settings = dict(load_yaml(args.config).get("chattracker") or {}) if args.config else {}
    settings.update(parse_overrides(args.set))
    sequences = real_sequences(data)
    if args.sequences:
        wanted = [s.strip() for s in args.sequences.split(",") if s.strip()]
        unknown = sorted(set(wanted) - {s.name for s in sequences})
        if unknown:
            raise SystemExit(f"bench: unknown sequence(s) {', '.join(unknown)}")
        sequences = [s for s in sequences if s.name in wanted]
    if args.reverse:
        sequences = [BenchSequence(s.name, s.frames[::-1], s.ground_truth[::-1].copy(), s.absent[::-1].copy(), s.language)
                     for s in sequences]
    sequences = [s for s in sequences if args.start < len(s.ground_truth) - 1]
    out = Path(args.out) / (("reverse-" if args.reverse else "") + (f"start{args.start}" if args.start else "full"))

    rows = {s.name: run_pair(s, settings, args.start, not args.no_text, out / args.base, not args.no_progress, args.base)
            for s in sequences}
    summary: dict[str, Any] = {}
    for kind in ("base", "chattracker"):
        average = average_official([rows[n][kind].pop("curves") for n in rows]).curves
        seconds = sum(rows[n][kind]["seconds"] for n in rows)
        frames = sum(rows[n]["frames"] - 1 for n in rows)
        summary[kind] = {"auc": round(average.auc, 4), "precision": round(average.precision_at_20, 4),
                         "fps": round(frames / max(seconds, 1e-9), 1)}
    summary["fps_ratio"] = round(summary["chattracker"]["fps"] / max(summary["base"]["fps"], 1e-9), 3)
    done = {"auc_not_below_base_everywhere": all(r["chattracker"]["auc"] >= r["base"]["auc"] for r in rows.values()),
            "auc_above_base_somewhere": any(r["chattracker"]["auc"] > r["base"]["auc"] for r in rows.values()),
            "fps_ratio_at_least_half": summary["fps_ratio"] >= 0.5}
    report = {"protocol": "official", "base": args.base, "wrapped": f"chattracker({args.base})",
              "settings": settings, "start": args.start, "reverse": args.reverse, "results": str(out), "sequences": rows,
              "average": summary, "done_when": done}

    header = f"{'sequence':<12} {'frames':>6} {'AUC base':>9} {'AUC chat':>9} {'P base':>7} {'P chat':>7} " \
             f"{'fps base':>9} {'fps chat':>9} {'ratio':>6} {'rounds':>6}  events"
    print(f"protocol: official; start frame {args.start + 1}" + (" of the reversed sequences" if args.reverse else ""))
    print(header)
    for name, r in rows.items():
        events = ", ".join(f"{e['event']}@{e['frame']}" for e in r["events"]) or "-"
        print(f"{name:<12} {r['frames']:>6} {r['base']['auc']:>9.4f} {r['chattracker']['auc']:>9.4f} "
              f"{r['base']['precision']:>7.4f} {r['chattracker']['precision']:>7.4f} {r['base']['fps']:>9.1f} "
              f"{r['chattracker']['fps']:>9.1f} {r['fps_ratio']:>6.2f} {r['grounding_rounds']:>6}  {events}")
    print(f"{'average':<12} {'':>6} {summary['base']['auc']:>9.4f} {summary['chattracker']['auc']:>9.4f} "
          f"{summary['base']['precision']:>7.4f} {summary['chattracker']['precision']:>7.4f} "
          f"{summary['base']['fps']:>9.1f} {summary['chattracker']['fps']:>9.1f} {summary['fps_ratio']:>6.2f}")
    print(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
