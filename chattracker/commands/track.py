"""`chattracker track`: track one target through a video or image folder and write what happened."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from chattracker.errors import InputError
from chattracker.outputs import RunFolder, default_name, free_folder
from chattracker.results import write_boxes, write_json
from chattracker.run_record import (RunRecord, add_choice_arguments, choose, frame_json, language_json, recording,
                                    rpo_trace_json, summary_lines)
from chattracker.language_start import build_language_start, draw_candidates, start_from_frames
from chattracker.tracking import FrameRecord, run_tracker, starts_from_language
from chattracker.types import Box, Frame, Tracker
from chattracker.video import (DEFAULT_STALL_TIMEOUT, AnnotatedVideoWriter, FrameSource, LiveSource, Overlay, StreamError,
                               check_init_box, is_camera_index, open_source, redact)

logger = logging.getLogger(__name__)


BOX_HELP = "initial box on the first frame as x,y,w,h (pixels); a box starting with '-' needs --box=-3,5,40,60"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "track", help="track a target through a video file, image folder, webcam or stream",
        description="Track one target from an initial box with ChatTracker around NanoTrack v2 (bundled weights), "
                    "or a base tracker alone (--plain, --tracker NAME). With --text and no --box the sentence is "
                    "grounded on frame 1 and the target chosen among the candidates (printed, drawn in start.png, "
                    "kept in start.json). Writes annotated.mp4, boxes.txt (x,y,w,h "
                    "per frame), track.json (per-frame box, score, time and the wrapper's decision; components, "
                    "weight sources, descriptions, events) and rpo_trace.json into --out. A live source (webcam "
                    "index, rtsp:// or http(s):// stream) is tracked as fast as it allows: frames that arrive while "
                    "one is tracked are dropped; Ctrl-C stops and keeps what was tracked.")
    parser.add_argument("source", help="video file, folder of frames (natural sort), webcam index (0) or stream URL "
                                       "(rtsp://, http://, https://; read with OpenCV's FFmpeg backend)")
    parser.add_argument("--box", help=BOX_HELP + "; without it, --text alone finds the target on frame 1")
    add_choice_arguments(parser)
    parser.add_argument("--config", help="YAML tracker config (tracker, params, enhance, chattracker); "
                                         "--tracker, --plain and --enhance override it")
    parser.add_argument("--text", help="natural-language description of the target (alone: a language start)")
    parser.add_argument("--out", help="output folder (default: runs/<source or sequence name>, numbered when taken)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--no-video", action="store_true", help="skip writing the annotated video")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--stall-timeout", type=float, default=DEFAULT_STALL_TIMEOUT, metavar="SECONDS",
                        help="live sources: stop with an error when no frame came for this long "
                             f"(default {DEFAULT_STALL_TIMEOUT:g})")
    parser.set_defaults(func=run)


def build_from_args(args: argparse.Namespace) -> Tracker:
    """ChatTracker around NanoTrack v2 unless the flags or the config say otherwise; a missing or
    rejected weight file is an error naming it, never a silent switch to another tracker."""
    from chattracker.config import TrackerConfig, load_tracker_config

    if args.config:
        config = load_tracker_config(args.config)
        if args.plain and args.enhance:
            choose(None, True, True)  # the same one-line error as without a config
        config.tracker = args.tracker or config.tracker
        config.enhance = (config.enhance or args.enhance) and not args.plain
    else:
        name, enhance = choose(args.tracker, args.plain, args.enhance)
        config = TrackerConfig(tracker=name, enhance=enhance, source="--tracker")
    return config.build()


def overlays_of(info: dict[str, Any]) -> list[Overlay]:
    """Boxes the tracker wants drawn: ``info['overlays']`` as (box, label, rgb) triples."""
    overlays = []
    for entry in info.get("overlays", ()):
        box, label, color = entry
        overlays.append(Overlay(Box.from_any(box), str(label), tuple(int(c) for c in color)))
    return overlays


def text_lines_of(info: dict[str, Any], text: str | None) -> list[str]:
    lines = [str(line) for line in info.get("text_lines", ())]
    return lines if lines else ([text] if text else [])


def run(args: argparse.Namespace) -> int:
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError("--max-frames must be at least 1")
    if args.box is None and not (args.text and args.text.strip()):
        raise InputError('give --box x,y,w,h, or --text "..." to find the target on frame 1 from the sentence alone')
    try:
        box = Box.parse(args.box) if args.box is not None else None
    except ValueError as error:
        raise InputError(str(error)) from None
    source = open_source(args.source, args.stall_timeout)
    try:
        return _run(args, box, source)
    finally:
        if isinstance(source, LiveSource):
            source.close()


def _run(args: argparse.Namespace, box: Box | None, source: FrameSource | LiveSource) -> int:
    init_box = check_init_box(box, source.width, source.height) if box is not None else None
    out = Path(args.out) if args.out else free_folder(Path("runs"), run_name(args.source))
    frames: Iterable[Frame] = source
    start = first = None
    with recording() as used:
        tracker = build_from_args(args)
        if init_box is None and not starts_from_language(tracker):
            config, grounder, describer = build_language_start(language_settings(args))
            start, first, frames = start_from_frames(source, args.text, config, grounder, describer)
            init_box = check_init_box(start.target.box, source.width, source.height)
        with RunFolder(out, "track.json", args.overwrite) as folder:
            if start is not None:
                draw_candidates(first, start, folder.staging / "start.png")
                write_json(folder.staging / "start.json", start.to_json())
            records, seconds, stopped = _track(args, tracker, source, frames, init_box, folder.staging, used)
            written = folder.publish()
    for line in start.lines() if start is not None else []:
        print(line)
    for line in summary_lines(tracker, used):
        print(line)
    print(f"tracked {len(records)} frames with {tracker.name} at {speed_text(records)} (wall {seconds:.1f}s) -> "
          f"{out}/ ({', '.join(written)})")
    if isinstance(source, LiveSource):
        print(live_text(source, records, seconds))
    if isinstance(stopped, StreamError):
        raise StreamError(f"{stopped}; the {len(records)} frames tracked before are in {out}/")
    return 0


def run_name(source: str) -> str:
    """Default output folder name; a live source is named by its camera or its URL's last part."""
    if is_camera_index(source):
        return f"camera{source}"
    if "://" in source:
        tail = source.split("://", 1)[1].split("?")[0].rstrip("/")
        name = tail.rsplit("/", 1)[-1].rsplit(".", 1)[0] if "/" in tail else tail.split("@")[-1]
        return "live-" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "stream")
    return default_name(source)


def live_text(source: LiveSource, records: list[FrameRecord], seconds: float) -> str:
    """How well tracking kept up: frames tracked per second of wall time and frames dropped."""
    rate = f"{len(records) / seconds:.1f}" if seconds > 0 else "n/a"
    return (f"live: {source.name}: {len(records)} frames tracked at {rate} fps (source {source.fps:g} fps), "
            f"{source.dropped} of {source.received} received frames dropped")


def speed_text(records: list[FrameRecord]) -> str:
    """Tracking speed over the frames after the first (frame 1 is the initialisation)."""
    seconds = sum(r.seconds for r in records[1:])
    if len(records) < 2 or seconds <= 0:
        return "n/a fps (only the first frame)"
    return f"{(len(records) - 1) / seconds:.1f} fps"


def language_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The config's ``language_start`` section (defaults without --config)."""
    from chattracker.config import load_tracker_config

    return load_tracker_config(args.config).language_start if args.config else {}


def _track(args: argparse.Namespace, tracker: Tracker, source: FrameSource | LiveSource, frames: Iterable[Frame],
           init_box: Box | None, staging: Path, used: RunRecord) -> tuple[list[FrameRecord], float, object]:
    """Track and write the results; returns the records, the wall time and what stopped a live source
    early (a ``StreamError``, "ctrl-c" or None): the frames tracked until then are kept."""
    writer = None if args.no_video else AnnotatedVideoWriter(staging / "annotated.mp4", source.fps, source.width, source.height)
    records: list[FrameRecord] = []
    live = isinstance(source, LiveSource)

    def draw(frame: Frame, record: FrameRecord) -> None:
        if writer is not None:
            writer.write(frame, record.index, record.box, record.score,
                         text_lines_of(record.info, args.text), overlays_of(record.info))
        records.append(record)  # after the frame is written: boxes and video stay the same length
        if live and record.index == 0:
            print(f"tracking {source.name}; Ctrl-C stops and keeps what was tracked", file=sys.stderr, flush=True)

    start = time.perf_counter()
    stopped: object = None
    try:
        with _ctrl_c_stops(source if live else None) as interrupted:
            try:
                run_tracker(tracker, frames, init_box, args.text, args.max_frames, source.num_frames,
                            on_frame=draw, progress=not args.no_progress)
            except StreamError as error:
                if not records:
                    raise
                stopped = error
            if interrupted:
                stopped = "ctrl-c"
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - start
    nan = [float("nan")] * 4
    write_boxes(staging / "boxes.txt", [r.box.to_list() if r.box is not None else nan for r in records])
    write_json(staging / "track.json", {
        "source": redact(str(args.source)), "tracker": tracker.name, "init": "box" if args.box else "language",
        "init_box": records[0].box.to_list() if records and records[0].box else None, "text": args.text,
        **language_json(tracker, used, records), "frames": [frame_json(r) for r in records],
        **({"live": {**source.stats(), "tracked": len(records), "seconds": round(seconds, 3),
                     "stopped": str(stopped) if stopped is not None else None}} if live else {}),
    })
    if used.rpo:
        write_json(staging / "rpo_trace.json", rpo_trace_json(used))
    return records, seconds, stopped


class _ctrl_c_stops:
    """While tracking a live source, the first Ctrl-C ends the iteration after the current frame (the run
    is then written as usual); a second one interrupts at once. Elsewhere Ctrl-C keeps its meaning."""

    def __init__(self, source: LiveSource | None) -> None:
        self.source = source
        self.pressed: list[bool] = []
        self.previous: object = None

    def __enter__(self) -> list[bool]:
        if self.source is not None and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self.pressed

    def _handle(self, signum: int, frame: object) -> None:
        self.pressed.append(True)
        self.source.stop()  # type: ignore[union-attr]
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc_info: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)  # type: ignore[arg-type]

