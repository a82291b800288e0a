"""One-pass evaluation (OPE): run a tracker over benchmark sequences and write result files only.

Per sequence: initialise on frame 1 with the ground-truth box (``init`` box), the box and the sequence's
sentence (box+language) or the sentence alone (language: frame 1 is predicted, the choice kept in
``<seq>_start.json``), track the rest, then write ``<seq>_time.txt`` and last ``<seq>.txt``, each
atomically, so a sequence counts as
done exactly when its ``<seq>.txt`` exists. A rerun skips finished sequences (resume); a failing
sequence is recorded and the others go on.

A results folder belongs to one tracker and configuration (``run.json`` keeps its hash): a run with
another is refused, and only one eval at a time may use a folder (an ``flock`` on the folder; ``run.json``
names the holder). Workers exit when the main process is gone, even when it was SIGKILLed.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from chattracker.builder import build_tracker_from_spec
from chattracker.config import load_yaml
from chattracker.results import write_boxes, write_json, write_times
from chattracker.tracking import run_tracker
from chattracker.types import Box
from chattracker.errors import InputError
from chattracker.video import read_image
from chattracker_eval.datasets.base import Sequence

logger = logging.getLogger(__name__)

RUN_RECORD = "run.json"
# How frame 1 is started: the ground-truth box alone, the box and the sentence, or the sentence alone
# (frame 1 predicted, not copied; the natural-language setting of TNL2K / OTB99-lang papers).
INIT_MODES = ("box", "box+language", "language")
PARENT_POLL_S = 1.0


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
    init: str = "box"  # box | box+language | language (INIT_MODES): what frame 1 is given


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
        if job.init != "language" and not (np.isfinite(job.init_box).all() and w > 0 and h > 0):
            raise ValueError(f"first ground-truth box {list(job.init_box)} has no area; cannot initialise")
        text = job.language.strip() if job.init != "box" else ""
        if job.init == "language" and not text:
            raise ValueError("no sentence for a language start (give one with --sentences)")
        if job.description is None:
            tracker = build_tracker_from_spec(job.tracker)
        else:
            from chattracker.packs import build_described_tracker

            tracker = build_described_tracker(job.tracker, *job.description)
        frames = read_frames(job, warnings)
        init_box: Box | None = Box(x, y, w, h)
        if job.init == "language":
            from chattracker.language_start import start_for_spec

            init_box, frames = start_for_spec(job.tracker, tracker, frames, text,
                                              job.results_dir / f"{job.name}_start.json")
        records = run_tracker(tracker, frames, init_box, text or None, total=len(job.frames), progress=False)
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
              descriptions: dict[str, tuple[str, str]] | None = None,
              init: str = "box") -> tuple[list[RunJob], list[RunOutcome]]:
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
                           (descriptions or {}).get(sequence.name), init))
    return jobs, outcomes


def tracker_fingerprint(spec: str) -> str:
    """sha256 of what decides a tracker's results: its name, or its YAML config's parsed content."""
    if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
        identity: Any = {"config": load_yaml(spec)}
    else:
        identity = {"tracker": spec}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


@contextmanager
def hold_results_folder(results_dir: Path) -> Iterator[None]:
    """Exclusive use of ``results_dir`` while the block runs; another holder is named in the refusal.

    The lock is an ``flock`` on the folder itself: the kernel drops it when its holder dies, so a killed run
    never leaves a stale lock, and no lock file sits among the results."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(results_dir, os.O_RDONLY)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"--results {results_dir} is a file, not a folder") from None
    except OSError as error:
        raise InputError(f"cannot use results folder {results_dir}: {(error.strerror or str(error)).lower()}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = _read_record(results_dir).get("running") or {}
        who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('since')}: {holder.get('command')}"
               if holder else "its holder has not written run.json yet")
        raise InputError(f"results folder {results_dir} is in use by another eval ({who}); wait for it to finish "
                         "or choose another --results") from None
    try:
        if not os.access(results_dir, os.W_OK):
            raise InputError(f"results folder {results_dir} is not writable")
        yield
    finally:
        os.close(fd)


def _read_record(results_dir: Path) -> dict[str, Any]:
    path = results_dir / RUN_RECORD
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{path} is unreadable ({error}); it says whose results the folder holds, "
                         "so fix or remove it") from None
    return data if isinstance(data, dict) else {}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def start_record(results_dir: Path, manifest: dict[str, Any], tracker: str, sequences: list[str]) -> dict[str, Any]:
    """The folder's ``run.json`` for this run: refused when the folder holds another tracker's or dataset's
    results; the sequence list grows (a ``--sequences`` rerun never shortens it)."""
    previous = _read_record(results_dir)
    fingerprint = tracker_fingerprint(tracker)
    has_results = any(is_done(results_dir, name) for name in previous.get("sequences", [])) or any(
        p.suffix == ".txt" and not p.name.endswith("_time.txt") for p in results_dir.iterdir())
    if previous and has_results:
        if previous.get("init", "box") != manifest.get("init", "box"):
            raise InputError(f"results folder {results_dir} holds results started with --init "
                             f"{previous.get('init', 'box')}, not {manifest.get('init', 'box')}; choose another --results")
        for key, value in (("tracker_sha256", fingerprint), ("dataset", manifest.get("dataset"))):
            if previous.get(key) is not None and previous.get(key) != value:
                raise InputError(
                    f"results folder {results_dir} holds results of tracker {previous.get('tracker')!r} on "
                    f"{previous.get('dataset')} (config sha256 {str(previous.get('tracker_sha256'))[:12]}), not of "
                    f"{tracker!r} on {manifest.get('dataset')} (sha256 {fingerprint[:12]}); choose another --results")
    merged = list(dict.fromkeys([*previous.get("sequences", []), *sequences]))
    return {**manifest, "tracker_sha256": fingerprint, "sequences": merged,
            "started": previous.get("started", manifest.get("started", _now())), "updated": _now(),
            "running": {"pid": os.getpid(), "host": socket.gethostname(), "since": _now(), "command": _command_line()}}


def _command_line() -> str:
    program = Path(sys.argv[0]).name if sys.argv else ""
    if program in ("chattracker", "cli.py", "__main__.py"):
        return " ".join(["chattracker", *sys.argv[1:]])
    return " ".join(sys.argv)


def finish_record(results_dir: Path, record: dict[str, Any]) -> None:
    """``run.json`` as the folder now is: which of its sequences have results; no holder."""
    record = {key: value for key, value in record.items() if key != "running"}
    record["done"] = [name for name in record["sequences"] if is_done(results_dir, name)]
    record["updated"] = _now()
    write_json(results_dir / RUN_RECORD, record)


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: a worker whose main process died (even by SIGKILL) exits instead of idling forever."""

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def run_benchmark(sequences: list[Sequence], tracker: str, results_dir: str | Path, workers: int = 1,
                  progress: bool = True, manifest: dict | None = None,
                  descriptions: dict[str, tuple[str, str]] | None = None) -> list[RunOutcome]:
    """Run ``tracker`` (a registered name or a YAML config) over ``sequences`` into ``results_dir``; with
    ``descriptions`` (sequence -> foreground, background) an enhanced tracker uses them instead of running RPO."""
    results_dir = Path(results_dir)
    with hold_results_folder(results_dir):
        record = None
        if manifest is not None:
            record = start_record(results_dir, manifest, tracker, [sequence.name for sequence in sequences])
            write_json(results_dir / RUN_RECORD, record)
        try:
            return _run(sequences, tracker, results_dir, workers, progress, descriptions,
                        (manifest or {}).get("init", "box"))
        finally:
            if record is not None:
                finish_record(results_dir, record)


def _run(sequences: list[Sequence], tracker: str, results_dir: Path, workers: int, progress: bool,
         descriptions: dict[str, tuple[str, str]] | None = None, init: str = "box") -> list[RunOutcome]:
    stale = remove_stale_temporaries(results_dir)
    if stale:
        logger.info("removed %d temp file(s) left by an interrupted run", stale)
    jobs, outcomes = make_jobs(sequences, tracker, results_dir, descriptions, init)
    bar = tqdm(total=len(jobs), unit="seq", desc=f"OPE {Path(tracker).stem}", disable=not progress)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                outcomes.append(track_sequence(job))
                bar.update(1)
        else:
            # spawn: trackers hold native thread pools (OpenCV, onnxruntime) that do not survive fork.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_exit_with_parent,
                                     initargs=(os.getpid(),)) as pool:
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
