"""One-pass evaluation (OPE): run a tracker over benchmark sequences and write result files only.

Per sequence: a worker (``eval.worker``, in this process, a local pool or a Ray actor; each builds its
tracker once) initialises on frame 1 with the ground-truth box (``init`` box), the box and the sequence's
sentence (box+language) or the sentence alone (language: frame 1 is predicted, the choice kept in
``<seq>_start.json``) and tracks the rest; this process alone writes ``<seq>_start.json``, ``<seq>_time.txt``
and last ``<seq>.txt``, each atomically, so a sequence counts as done exactly when its ``<seq>.txt`` exists.
A rerun skips finished sequences (resume); a failing sequence is recorded and the others go on; a sequence
whose worker died is retried a bounded number of times.

A results folder belongs to one tracker and configuration (``run.json`` keeps its hash): a run with
another is refused, and only one eval at a time may use a folder (an ``flock`` on the folder; ``run.json``
names the holder), except the shards of one run (``--shard I/N``), which share it and lock each sequence.
Workers exit when the main process is gone, even when it was SIGKILLed.
"""

from __future__ import annotations

import datetime
import fcntl
import glob
import hashlib
import json
import logging
import os
import socket
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterator

from tqdm import tqdm

from chattracker.config import Range, Why, check_instance, load_yaml
from chattracker.errors import InputError
from chattracker.results import write_boxes, write_json, write_times
from chattracker_eval.backends import Backend, InlineBackend, PoolBackend
from chattracker_eval.datasets.base import Sequence
from chattracker_eval.shards import LOCK_FOLDER, SequenceLock, shard_of
from chattracker_eval.worker import RunJob, SequenceResult, SequenceWorker

logger = logging.getLogger(__name__)

RUN_RECORD = "run.json"
# How frame 1 is started: the ground-truth box alone, the box and the sentence, or the sentence alone
# (frame 1 predicted, not copied; the natural-language setting of TNL2K / OTB99-lang papers).
INIT_MODES = ("box", "box+language", "language")
DEFAULT_RETRIES = 2  # a sequence whose worker died is tried again this many times, then reported failed


@dataclass
class RunOutcome:
    name: str
    status: str            # "done", "skipped" or "failed"
    frames: int = 0
    seconds: float = 0.0
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    build_seconds: float = 0.0  # of ``seconds``, building the tracker (0 when the worker reused its own)
    worker: str = ""
    attempts: int = 0
    finished: float = 0.0  # time.monotonic() when this process wrote it (throughput after warm-up)


def result_files(results_dir: Path, name: str) -> tuple[Path, Path]:
    return results_dir / f"{name}.txt", results_dir / f"{name}_time.txt"


def is_done(results_dir: Path, name: str) -> bool:
    return result_files(results_dir, name)[0].is_file()


def remove_stale_temporaries(results_dir: Path, files: list[str] | None = None) -> int:
    """Temp files of writes cut short by a kill (never read by any toolkit, but untidy): all of them, or only
    those of ``files`` (names in the folder). Shards sharing a folder pass the files they hold the lock of,
    since another shard's temp file may be a write in flight."""
    patterns = [".*.tmp"] if files is None else [f".{glob.escape(name)}.*.tmp" for name in files]
    removed = 0
    for pattern in patterns:
        for path in results_dir.glob(pattern):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def sequence_files(name: str) -> list[str]:
    """The files a sequence's results are written to (boxes, times, a language start's choice)."""
    boxes, times = result_files(Path(), name)
    return [boxes.name, times.name, f"{name}_start.json"]


def write_result(job: RunJob, result: SequenceResult, attempts: int) -> RunOutcome:
    """The driver's one write per sequence: times first, boxes last (each atomic), so ``<seq>.txt`` existing
    means the sequence is done."""
    common = dict(seconds=result.seconds, warnings=result.warnings, build_seconds=result.build_seconds,
                  worker=result.worker, attempts=attempts)
    if result.error:
        return RunOutcome(job.name, "failed", error=result.error, **common)
    boxes_file, times_file = result_files(job.results_dir, job.name)
    try:
        if result.start is not None:  # a language start: the frame-1 choice, for the report and the audit trail
            write_json(job.results_dir / f"{job.name}_start.json", result.start)
        write_times(times_file, result.times)
        write_boxes(boxes_file, result.boxes)
    except OSError as error:
        return RunOutcome(job.name, "failed", error=f"cannot write results: {error.strerror or error}", **common)
    return RunOutcome(job.name, "done", len(result.boxes), finished=time.monotonic(), **common)


def track_sequence(job: RunJob) -> RunOutcome:
    """Run one sequence on a freshly built tracker and write its two files (what a single call needs)."""
    return write_result(job, SequenceWorker(reuse=False).run(job), 1)


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
    elif spec.endswith("+chattracker"):  # the shipped fusion settings and model decide it too
        from chattracker.fusion.target_model import BUNDLED, manifest_path
        from chattracker_configs import default_fusion_settings

        identity = {"tracker": spec, "settings": default_fusion_settings(),
                    "model": json.loads(manifest_path(BUNDLED).read_text())["sha256"]}
    else:
        identity = {"tracker": spec}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


@contextmanager
def hold_results_folder(results_dir: Path, shared: bool = False) -> Iterator[None]:
    """Use of ``results_dir`` while the block runs: exclusive, or ``shared`` with the other shards of one run
    (each sequence then has its own lock); another holder is named in the refusal.

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
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = _read_record(results_dir).get("running") or {}
        who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('since')}: {holder.get('command')}"
               if holder else "its holder has not written run.json yet")
        hint = " (shards share a folder only with other shards: pass --shard to every run)" if shared or holder.get(
            "shard") else ""
        raise InputError(f"results folder {results_dir} is in use by another eval ({who}){hint}; wait for it to "
                         "finish or choose another --results") from None
    try:
        if not os.access(results_dir, os.W_OK):
            raise InputError(f"results folder {results_dir} is not writable")
        yield
    finally:
        os.close(fd)


@contextmanager
def record_lock(results_dir: Path, shared: bool) -> Iterator[None]:
    """Serialises read-modify-write of ``run.json`` between shards sharing the folder (an exclusive holder
    needs none, and leaves no ``.locks`` folder behind)."""
    if not shared:
        yield
        return
    folder = results_dir / LOCK_FOLDER
    folder.mkdir(exist_ok=True)
    fd = os.open(folder / f"{RUN_RECORD}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
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
    """``run.json`` as the folder now is: which of its sequences have results; no holder (unless another
    shard took over as the named holder since)."""
    current = _read_record(results_dir)
    record = {**record, "sequences": list(dict.fromkeys([*current.get("sequences", []), *record["sequences"]]))}
    ours = record.get("running") or {}
    theirs = current.get("running") or {}
    if theirs and (theirs.get("pid"), theirs.get("host")) != (ours.get("pid"), ours.get("host")):
        record["running"] = theirs
    else:
        record.pop("running", None)
    record["done"] = [name for name in record["sequences"] if is_done(results_dir, name)]
    record["updated"] = _now()
    write_json(results_dir / RUN_RECORD, record)




class _NoLock:
    """An exclusive holder of the folder needs no per-sequence lock."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


NO_LOCK = _NoLock()


@dataclass
class Workers:
    """Where sequences run: ``backend`` local (``workers`` processes, ``devices`` round-robin) or ray
    (``address``, ``workers`` actors, ``gpus_per_worker`` each); ``threads`` per worker (None: local workers
    share the cores, one worker in this process keeps them all, a Ray actor takes one); ``reuse=False`` rebuilds
    per sequence."""

    backend: str = "local"
    workers: Annotated[int | None, Range(1, 4096), Why("processes or actors running sequences side by side")] = None
    devices: list[str] | None = None
    address: str | None = None
    gpus_per_worker: Annotated[float, Range(0.0, 1024.0), Why(
        "GPUs Ray reserves per actor; a share such as 0.25 packs four actors on one GPU")] = 0.0
    retries: Annotated[int, Range(0, 100), Why(
        "a sequence whose worker died is tried again this many times, then reported failed")] = DEFAULT_RETRIES
    reuse: bool = True
    threads: Annotated[int | None, Range(1, 1024), Why("CPU threads per worker (null: a fair share)")] = None

    def __post_init__(self) -> None:
        check_instance("eval", self)

    def start(self, jobs: int) -> Backend:
        if self.backend == "ray":
            from chattracker_eval.ray_backend import RayBackend

            return RayBackend(self.address, self.workers, self.gpus_per_worker, self.reuse, self.threads)
        workers = self.workers or 1
        if workers <= 1 or jobs <= 1:
            return InlineBackend(self.devices[0] if self.devices else None, self.reuse, self.threads)
        return PoolBackend(workers, self.devices, self.reuse, self.threads)


def run_benchmark(sequences: list[Sequence], tracker: str, results_dir: str | Path, workers: int | Workers = 1,
                  progress: bool = True, manifest: dict | None = None,
                  descriptions: dict[str, tuple[str, str]] | None = None,
                  shard: tuple[int, int] | None = None) -> list[RunOutcome]:
    """Run ``tracker`` (a registered name or a YAML config) over ``sequences`` into ``results_dir``; with
    ``descriptions`` (sequence -> foreground, background) an enhanced tracker uses them instead of running RPO;
    with ``shard`` (I, N) only shard I of N, sharing the folder with the other shards."""
    results_dir = Path(results_dir)
    plan = workers if isinstance(workers, Workers) else Workers(workers=workers)
    if shard is not None:
        sequences = shard_of(list(sequences), *shard)
    with hold_results_folder(results_dir, shared=shard is not None):
        record = None
        if manifest is not None:
            with record_lock(results_dir, shard is not None):
                if shard is not None:
                    remove_stale_temporaries(results_dir, [RUN_RECORD])
                record = start_record(results_dir, manifest, tracker, [sequence.name for sequence in sequences])
                if shard is not None:
                    record["running"]["shard"] = f"{shard[0]}/{shard[1]}"
                write_json(results_dir / RUN_RECORD, record)
        try:
            return _run(sequences, tracker, results_dir, plan, progress, descriptions, shared=shard is not None,
                        init=(manifest or {}).get("init", "box"))
        finally:
            if record is not None:
                with record_lock(results_dir, shard is not None):
                    finish_record(results_dir, record)


def _run(sequences: list[Sequence], tracker: str, results_dir: Path, plan: Workers, progress: bool,
         descriptions: dict[str, tuple[str, str]] | None = None, shared: bool = False,
         init: str = "box") -> list[RunOutcome]:
    stale = 0 if shared else remove_stale_temporaries(results_dir)  # shards clean what they hold the lock of
    if stale:
        logger.info("removed %d temp file(s) left by an interrupted run", stale)
    jobs, outcomes = make_jobs(sequences, tracker, results_dir, descriptions, init)
    if jobs:
        backend = plan.start(len(jobs))  # an unreachable cluster fails here, before any progress bar
        bar = tqdm(total=len(jobs), unit="seq", desc=f"OPE {Path(tracker).stem}", disable=not progress)
        try:
            outcomes.extend(_schedule(jobs, backend, plan.retries, results_dir, bar, shared))
        finally:
            bar.close()
            backend.close()
    order = {sequence.name: index for index, sequence in enumerate(sequences)}
    return sorted(outcomes, key=lambda outcome: order.get(outcome.name, len(order)))


def _schedule(jobs: list[RunJob], backend: Backend, retries: int, results_dir: Path, bar: tqdm,
              shared: bool) -> list[RunOutcome]:
    """One sequence in flight per worker slot, each under its own lock when the folder is ``shared`` by shards;
    a sequence whose worker was lost goes back in the queue up to ``retries`` times, then fails with the reason."""
    pending = deque(jobs)
    attempts: dict[str, int] = {}
    held: dict[str, SequenceLock | _NoLock] = {}
    outcomes: list[RunOutcome] = []
    try:
        while pending or held:
            while pending and len(held) < backend.slots:
                job = pending.popleft()
                lock = SequenceLock(results_dir, job.name) if shared else NO_LOCK
                if not lock.acquire():
                    outcomes.append(RunOutcome(job.name, "skipped", warnings=[
                        "another eval sharing this folder is running it (its lock is held)"]))
                    bar.update(1)
                    continue
                if is_done(results_dir, job.name):  # finished by another shard meanwhile
                    lock.release()
                    outcomes.append(RunOutcome(job.name, "skipped"))
                    bar.update(1)
                    continue
                if shared:
                    remove_stale_temporaries(results_dir, sequence_files(job.name))
                attempts[job.name] = attempts.get(job.name, 0) + 1
                held[job.name] = lock
                backend.submit(job)
            for completion in backend.wait(timeout=1.0):
                name = completion.job.name
                try:
                    if completion.result is not None:
                        outcomes.append(write_result(completion.job, completion.result, attempts[name]))
                    elif attempts[name] <= retries:
                        logger.warning("sequence %s: %s; trying again (%d of %d retries)", name, completion.lost,
                                       attempts[name], retries)
                        pending.appendleft(completion.job)
                        continue
                    else:
                        outcomes.append(RunOutcome(name, "failed", attempts=attempts[name],
                                                   error=f"{completion.lost} (tried {attempts[name]} time(s))"))
                    bar.update(1)
                finally:
                    held.pop(name).release()
    finally:
        for lock in held.values():
            lock.release()
    return outcomes
