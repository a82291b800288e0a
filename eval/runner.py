"""One-pass evaluation (OPE): run a tracker over benchmark sequences and write result files only.

Per sequence: initialise on frame 1 with the ground-truth box and the sequence's sentence, track the
rest, then write ``<seq>_time.txt`` and last ``<seq>.txt``, each atomically, so a sequence counts as
done exactly when its ``<seq>.txt`` exists. A rerun skips finished sequences (resume); a failing
sequence is recorded and the others go on.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from chattracker.builder import build_tracker_from_spec
from chattracker.results import write_boxes, write_json, write_times
from chattracker.tracking import run_tracker
from chattracker.types import Box
from chattracker.errors import InputError
from chattracker.video import read_image
from chattracker_eval.datasets.base import Sequence

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


@dataclass
class RunOutcome:
    name: str
    status: str            # "done", "skipped" or "failed"
    frames: int = 0
    seconds: float = 0.0
    error: str = ""
    warnings: list[str] = field(default_factory=list)


def result_files(results_dir: Path, name: str) -> tuple[Path, Path]:
    return results_dir / f"{name}.txt", results_dir / f"{name}_time.txt"


def is_done(results_dir: Path, name: str) -> bool:
    return result_files(results_dir, name)[0].is_file()


def remove_stale_temporaries(results_dir: Path) -> int:
    """Temp files of writes cut short by a kill (never read by any toolkit, but untidy)."""
    removed = 0
    for path in results_dir.glob(".*.tmp"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


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


def track_sequence(job: RunJob) -> RunOutcome:
    """Run one sequence and write its two files; any exception becomes a failed outcome."""
    start = time.perf_counter()
    warnings: list[str] = []
    try:
        x, y, w, h = job.init_box
        if not (np.isfinite(job.init_box).all() and w > 0 and h > 0):
            raise ValueError(f"first ground-truth box {list(job.init_box)} has no area; cannot initialise")
        if job.description is None:
            tracker = build_tracker_from_spec(job.tracker)
        else:
            from chattracker.packs import build_described_tracker

            tracker = build_described_tracker(job.tracker, *job.description)
        frames = read_frames(job, warnings)
        records = run_tracker(tracker, frames, Box(x, y, w, h), job.language or None, total=len(job.frames),
                              progress=False)
        if len(records) != len(job.frames):
            raise RuntimeError(f"tracked {len(records)} of {len(job.frames)} frames")
        boxes, held = [], 0
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
        boxes_file, times_file = result_files(job.results_dir, job.name)
        write_times(times_file, [r.seconds for r in records])
        write_boxes(boxes_file, boxes)
        return RunOutcome(job.name, "done", len(records), time.perf_counter() - start, warnings=warnings)
    except Exception as error:  # one bad sequence must not stop the benchmark
        logger.debug("sequence %s failed:\n%s", job.name, traceback.format_exc())
        return RunOutcome(job.name, "failed", 0, time.perf_counter() - start, f"{type(error).__name__}: {error}",
                          warnings)


def make_jobs(sequences: list[Sequence], tracker: str, results_dir: Path,
              descriptions: dict[str, tuple[str, str]] | None = None) -> tuple[list[RunJob], list[RunOutcome]]:
    """Jobs for the sequences not done yet; sequences whose frames cannot be listed fail here."""
    jobs, outcomes = [], []
    for sequence in sequences:
        if is_done(results_dir, sequence.name):
            outcomes.append(RunOutcome(sequence.name, "skipped"))
            continue
        try:
            frames = sequence.frames
            if not frames:
                raise ValueError("no frames found")
        except Exception as error:
            outcomes.append(RunOutcome(sequence.name, "failed", error=f"{type(error).__name__}: {error}"))
            continue
        box = tuple(float(v) for v in sequence.init_box)
        jobs.append(RunJob(sequence.name, list(frames), box, sequence.language, tracker, results_dir,
                           (descriptions or {}).get(sequence.name)))
    return jobs, outcomes


def run_benchmark(sequences: list[Sequence], tracker: str, results_dir: str | Path, workers: int = 1,
                  progress: bool = True, manifest: dict | None = None,
                  descriptions: dict[str, tuple[str, str]] | None = None) -> list[RunOutcome]:
    """Run ``tracker`` (a registered name or a YAML config) over ``sequences`` into ``results_dir``; with
    ``descriptions`` (sequence -> foreground, background) an enhanced tracker uses them instead of running RPO."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stale = remove_stale_temporaries(results_dir)
    if stale:
        logger.info("removed %d temp file(s) left by an interrupted run", stale)
    if manifest is not None:
        write_json(results_dir / "run.json", manifest)
    jobs, outcomes = make_jobs(sequences, tracker, results_dir, descriptions)
    bar = tqdm(total=len(jobs), unit="seq", desc=f"OPE {Path(tracker).stem}", disable=not progress)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                outcomes.append(track_sequence(job))
                bar.update(1)
        else:
            # spawn: trackers hold native thread pools (OpenCV, onnxruntime) that do not survive fork.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = {pool.submit(track_sequence, job): job for job in jobs}
                for future in as_completed(futures):
                    try:
                        outcomes.append(future.result())
                    except Exception as error:  # a worker that died (crash in native code) fails its job only
                        outcomes.append(RunOutcome(futures[future].name, "failed",
                                                   error=f"worker process failed: {type(error).__name__}: {error}"))
                    bar.update(1)
    finally:
        bar.close()
    order = {sequence.name: index for index, sequence in enumerate(sequences)}
    return sorted(outcomes, key=lambda outcome: order.get(outcome.name, len(order)))
