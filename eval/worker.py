"""A sequence worker: builds its tracker once (base, describer, grounder, appearance model) and runs one
sequence after another on it, returning boxes and times to the one process that writes result files.

Re-initialising a built tracker must give what a fresh build gives (the wrapper's ``initialize`` resets
every part); ``tests/test_eval_workers.py`` checks that in any order of sequences.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chattracker.builder import build_tracker_from_spec
from chattracker.devices import set_worker_device
from chattracker.errors import InputError
from chattracker.tracking import run_tracker
from chattracker.types import Box, Tracker
from chattracker.video import read_image

logger = logging.getLogger(__name__)


@dataclass
class RunJob:
    """What a worker needs for one sequence (picklable: plain paths and numbers)."""

    name: str
    frames: list[Path]
    init_box: tuple[float, float, float, float]
    language: str
    tracker: str
    results_dir: Path
    description: tuple[str, str] | None = None  # (foreground, background) from a pack: no RPO
    init: str = "box"  # box | box+language | language (runner.INIT_MODES): what frame 1 is given


@dataclass
class SequenceResult:
    """One sequence's outcome as a worker returns it; ``boxes`` and ``times`` are empty when it failed."""

    name: str
    boxes: list[list[float]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    seconds: float = 0.0
    build_seconds: float = 0.0  # of it, building the tracker (0 when a built one was reused)
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    worker: str = ""
    start: dict | None = None  # a language start: the frame-1 choice (the driver writes <seq>_start.json)


def read_frames(job: RunJob, warnings: list[str]):
    """Frames as RGB arrays. An unreadable frame after the first repeats the previous one (known in
    real archives, e.g. a corrupt TNL2K frame) so the sequence still gets one row per frame; it is
    reported. An unreadable first frame fails the sequence."""
    previous = None
    for index, path in enumerate(job.frames):
        try:
            previous = read_image(path)
        except InputError as error:
            if previous is None:
                raise
            message = f"frame {index + 1} unreadable ({error}); the previous frame was used again"
            logger.warning("sequence %s: %s", job.name, message)
            warnings.append(message)
        yield previous


def limit_threads(threads: int) -> Callable[[], None]:
    """Workers sharing a machine split its cores: N workers each running OpenCV's and torch's full thread
    pools would oversubscribe it (Ray does the same for its actors through OMP_NUM_THREADS). Returns what
    puts the process's settings back (a worker inside the caller's process must not keep them)."""
    import os
    import sys

    import cv2

    from chattracker.devices import ENV_THREADS

    saved_env = {key: os.environ.get(key) for key in ("OMP_NUM_THREADS", ENV_THREADS)}
    saved_cv2 = cv2.getNumThreads()
    torch = sys.modules.get("torch")
    saved_torch = torch.get_num_threads() if torch is not None else None
    os.environ["OMP_NUM_THREADS"] = str(threads)  # torch reads it when first imported
    os.environ[ENV_THREADS] = str(threads)  # the onnxruntime models the tracker builds (thread_budget)
    cv2.setNumThreads(threads)
    if torch is not None:
        torch.set_num_threads(threads)

    def restore() -> None:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        cv2.setNumThreads(saved_cv2)
        if torch is not None and saved_torch is not None:
            torch.set_num_threads(saved_torch)

    return restore


class SequenceWorker:
    """Runs sequences on one tracker built on first use; ``reuse=False`` builds one per sequence (the
    behaviour before workers kept their models, kept for comparison)."""

    def __init__(self, device: str | None = None, reuse: bool = True, label: str = "", threads: int | None = None) -> None:
        self.device = device
        self.reuse = reuse
        self.label = label or f"worker on {device or 'default device'}"
        self._built: dict[tuple[str, bool], Tracker] = {}
        set_worker_device(device)
        self.restore_threads = limit_threads(threads) if threads else (lambda: None)

    def tracker_for(self, job: RunJob) -> tuple[Tracker, float]:
        """The tracker for ``job`` and the seconds spent building it now (0 when reused)."""
        key = (job.tracker, job.description is not None)
        if self.reuse and key in self._built:
            tracker = self._built[key]
            if job.description is not None:
                foreground, background = job.description
                tracker.config = dataclasses.replace(tracker.config, foreground=foreground, background=background)
            return tracker, 0.0
        start = time.perf_counter()
        if job.description is None:
            tracker = build_tracker_from_spec(job.tracker)
        else:
            from chattracker.packs import build_described_tracker

            tracker = build_described_tracker(job.tracker, *job.description)
        if self.reuse:
            self._built[key] = tracker
        return tracker, time.perf_counter() - start

    def run(self, job: RunJob) -> SequenceResult:
        """Track one sequence; any exception becomes a failed result (one bad sequence must not stop a benchmark)."""
        start = time.perf_counter()
        warnings: list[str] = []
        build = 0.0
        try:
            x, y, w, h = job.init_box
            if job.init != "language" and not (np.isfinite(job.init_box).all() and w > 0 and h > 0):
                raise ValueError(f"first ground-truth box {list(job.init_box)} has no area; cannot initialise")
            text = job.language.strip() if job.init != "box" else ""
            if job.init == "language" and not text:
                raise ValueError("no sentence for a language start (give one with --sentences)")
            tracker, build = self.tracker_for(job)
            frames = read_frames(job, warnings)
            init_box: Box | None = Box(x, y, w, h)
            start_record = None
            if job.init == "language":
                from chattracker.language_start import start_for_spec

                init_box, frames, start_record = start_for_spec(job.tracker, tracker, frames, text)
            records = run_tracker(tracker, frames, init_box, text or None, total=len(job.frames), progress=False)
            if len(records) != len(job.frames):
                raise RuntimeError(f"tracked {len(records)} of {len(job.frames)} frames")
            boxes: list[list[float]] = []
            held = 0
            for record in records:
                if record.box is None or not record.box.is_valid():
                    # A lost target keeps the last box: what the official toolkit's repair does anyway,
                    # and pytracking refuses NaN rows, so both read the file unchanged.
                    boxes.append(boxes[-1])
                    held += 1
                else:
                    boxes.append(record.box.to_list())
            if held:
                logger.info("sequence %s: %d frame(s) without a box kept the previous box", job.name, held)
            return SequenceResult(job.name, boxes, [r.seconds for r in records], time.perf_counter() - start, build,
                                  warnings=warnings, worker=self.label, start=start_record)
        except Exception as error:
            logger.debug("sequence %s failed:\n%s", job.name, traceback.format_exc())
            return SequenceResult(job.name, seconds=time.perf_counter() - start, build_seconds=build,
                                  error=f"{type(error).__name__}: {error}", warnings=warnings, worker=self.label)
