"""`chattracker demo`: the base tracker alone and ChatTracker on the same built-in scene, side by side.

Runs from the bundled weights (no download, no environment variables). Writes the side-by-side
video, a picture strip of key frames, both scores, and the language side (descriptions, per-frame
decisions, events, RPO trace) into --out.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

from chattracker.commands.track import overlays_of
from chattracker.config import TrackerConfig
from chattracker.demo_scene import DemoScene
from chattracker.errors import InputError
from chattracker.outputs import make_staging, publish_folder
from chattracker.results import write_boxes, write_json
from chattracker.run_record import (add_choice_arguments, choose, frame_json, language_json, recording, rpo_trace_json,
                                    summary_lines)
from chattracker.tracking import FrameRecord, run_tracker
from chattracker.types import Tracker
from chattracker.video import AnnotatedVideoWriter, Overlay, annotate

TRUTH_COLOR = (255, 255, 0)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="the base tracker alone and ChatTracker on a built-in scene, side by side",
        description="Renders a built-in scene of wall clocks that the bundled YOLOX-Nano detects (the target, a "
                    "same-size look-alike of another colour that crosses it, a bigger look-alike, a pillar that "
                    "hides the target), tracks the target with the base tracker alone and with ChatTracker, and "
                    "writes side_by_side.mp4, strip.png, both scores, track.json and rpo_trace.json into --out.")
    add_choice_arguments(parser)
    parser.add_argument("--frames", type=int, default=150, help="number of frames to render (default 150)")
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def scores(scene: DemoScene, records: list[FrameRecord]) -> dict[str, float]:
    """Mean IoU and success rate at IoU 0.5 over the frames where the target is visible
    (a frame reported absent while the target is visible scores 0)."""
    ious = np.array([r.box.iou(scene.ground_truth[r.index]) if r.box is not None else 0.0
                     for r in records if not scene.absent[r.index]])
    return {"mean_iou": float(ious.mean()), "success_rate_iou_0.5": float((ious > 0.5).mean())}


def run(args: argparse.Namespace) -> int:
    if args.frames < 20:
        raise InputError("--frames must be at least 20 (the scene needs room for its crossing and occlusion)")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise InputError(f"--out {args.out} is a file, not a folder")
    scene = DemoScene(num_frames=args.frames)
    name, enhance = choose(args.tracker, args.plain, args.enhance)
    out = Path(args.out)
    with recording() as used:
        trackers = {"base": TrackerConfig(tracker=name, source="demo").build()}
        if enhance:
            trackers["chattracker"] = TrackerConfig(tracker=name, enhance=True, source="demo").build()
        records = {label: run_tracker(tracker, scene, scene.ground_truth[0], None, total=len(scene),
                                      progress=not args.no_progress) for label, tracker in trackers.items()}
    results = {label: {"tracker": trackers[label].name, **scores(scene, recs)} for label, recs in records.items()}
    final = list(trackers)[-1]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = make_staging(out)
    try:
        _write_video(staging / ("side_by_side.mp4" if enhance else "annotated.mp4"), scene, trackers, records)
        cv2.imwrite(str(staging / "strip.png"), picture_strip(scene, trackers, records),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
        nan = [float("nan")] * 4
        for label, recs in records.items():
            write_boxes(staging / ("boxes.txt" if label == final else f"boxes_{label}.txt"),
                        [r.box.to_list() if r.box is not None else nan for r in recs])
        write_boxes(staging / "groundtruth.txt", [b.to_list() for b in scene.ground_truth])
        write_json(staging / "track.json", {
            "scene": scene.description(), "scores": results, "tracker": trackers[final].name,
            **language_json(trackers[final], used, records[final]), "frames": [frame_json(r) for r in records[final]],
            **({"base_frames": [r.to_json() for r in records["base"]]} if enhance else {})})
        if used.rpo:
            write_json(staging / "rpo_trace.json", rpo_trace_json(used))
        written = publish_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"scene: {scene.description()}")
    for line in summary_lines(trackers[final], used):
        print(line)
    for label, result in results.items():
        print(f"{label:<11} {result['tracker']}: mean IoU {result['mean_iou']:.3f}, "
              f"success@0.5 {result['success_rate_iou_0.5']:.3f} (visible frames)")
    print(f"-> {out}/ ({', '.join(written)})")
    return 0


def _panel(frame: np.ndarray, index: int, scene: DemoScene, label: str, tracker: Tracker,
           record: FrameRecord) -> np.ndarray:
    """One annotated picture: the truth (yellow), proposals and the decision for a wrapper, the box."""
    overlays = [] if scene.absent[index] else [Overlay(scene.ground_truth[index], "truth", TRUTH_COLOR)]
    overlays += overlays_of(record.info)
    base = getattr(tracker, "base", None)
    title = f"ChatTracker({getattr(base, 'name', '?')})" if base is not None else f"base: {tracker.name}"
    lines = [title, *[str(line) for line in record.info.get("text_lines", ())]]
    return annotate(frame, index, record.box, record.score, lines, overlays)


def _write_video(path: Path, scene: DemoScene, trackers: dict[str, Tracker],
                 records: dict[str, list[FrameRecord]]) -> None:
    writer = AnnotatedVideoWriter(path, 25.0, scene.width * len(trackers), scene.height)
    try:
        for index, frame in enumerate(scene):
            writer.write_bgr(np.hstack([_panel(frame, index, scene, label, trackers[label], records[label][index])
                                        for label in trackers]))
    except BaseException:
        writer.abort()
        raise
    writer.close()


def picture_strip(scene: DemoScene, trackers: dict[str, Tracker], records: dict[str, list[FrameRecord]],
                  scale: float = 0.5) -> np.ndarray:
    """Key frames (columns) of every run (rows, base first), each column headed by what happens."""
    columns = []
    for what, index in scene.key_frames().items():
        frame = scene.frame(index)
        tiles = [cv2.resize(_panel(frame, index, scene, label, trackers[label], records[label][index]), None,
                            fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for label in trackers]
        header = np.full((22, tiles[0].shape[1], 3), 255, np.uint8)
        cv2.putText(header, f"#{index + 1} {what}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        columns.append(np.vstack([header, *tiles]))
        columns.append(np.full((columns[-1].shape[0], 3, 3), 255, np.uint8))
    return np.hstack(columns[:-1])

