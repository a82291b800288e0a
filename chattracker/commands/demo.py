"""`chattracker demo`: the main job end to end on an embedded synthetic scene (no download needed)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from chattracker.commands.track import resolve_auto_tracker
from chattracker.config import TrackerConfig
from chattracker.demo_scene import DemoScene
from chattracker.errors import InputError
from chattracker.outputs import publish_folder
from chattracker.results import write_boxes, write_json
from chattracker.tracking import FrameRecord, run_tracker
from chattracker.video import AnnotatedVideoWriter, Overlay


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="track a target through a built-in synthetic scene and write the annotated video",
        description="Renders a synthetic scene (a target, look-alike distractors crossing it, an occluding pillar), "
                    "tracks the target with the best tracker available and writes annotated.mp4, boxes.txt, "
                    "track.json and the ground truth into --out.")
    parser.add_argument("--tracker", default="auto", help="tracker name (auto: nanotrack_v2 when found, else csrt)")
    parser.add_argument("--enhance", action="store_true", help="wrap the tracker with the ChatTracker fusion module")
    parser.add_argument("--frames", type=int, default=150, help="number of frames to render")
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.frames < 2:
        raise InputError(f"--frames must be at least 2 (one to start on, one to track), got {args.frames}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise InputError(f"--out {args.out} is a file, not a folder")
    scene = DemoScene(num_frames=args.frames)
    name = resolve_auto_tracker() if args.tracker == "auto" else args.tracker
    tracker = TrackerConfig(tracker=name, enhance=args.enhance, source="demo").build()
    print(f"components: tracker {tracker.name}" + (" (auto)" if args.tracker == "auto" else "")
          + ("; nanotrack_v2 weights not found, set CHATTRACKER_WEIGHTS to use them"
             if args.tracker == "auto" and name == "csrt" else ""))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        writer = AnnotatedVideoWriter(staging / "annotated.mp4", 25.0, scene.width, scene.height)

        def draw(frame: np.ndarray, record: FrameRecord) -> None:
            truth = scene.ground_truth[record.index]
            overlays = [] if scene.absent[record.index] else [Overlay(truth, "truth", (255, 255, 0))]
            writer.write(frame, record.index, record.box, record.score, ["demo scene"], overlays)

        try:
            records = run_tracker(tracker, scene, scene.ground_truth[0], None, total=len(scene), on_frame=draw,
                                  progress=not args.no_progress)
        except BaseException:
            writer.abort()
            raise
        writer.close()
        nan = [float("nan")] * 4
        write_boxes(staging / "boxes.txt", [r.box.to_list() if r.box is not None else nan for r in records])
        write_boxes(staging / "groundtruth.txt", [b.to_list() for b in scene.ground_truth])
        ious = [r.box.iou(scene.ground_truth[r.index]) if r.box is not None else 0.0
                for r in records if not scene.absent[r.index]]
        summary = {"tracker": tracker.name, "frames": len(records), "mean_iou": float(np.mean(ious)),
                   "success_rate_iou_0.5": float(np.mean(np.array(ious) > 0.5)),
                   "fps": (len(records) - 1) / max(sum(r.seconds for r in records[1:]), 1e-9)}
        write_json(staging / "track.json", {**summary, "frames_detail": [r.to_json() for r in records]})
        written = publish_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"tracked {summary['frames']} frames with {tracker.name} at {summary['fps']:.0f} fps; "
          f"mean IoU {summary['mean_iou']:.3f}, success@0.5 {summary['success_rate_iou_0.5']:.3f} "
          f"(visible frames) -> {out}/ ({', '.join(written)})")
    return 0
