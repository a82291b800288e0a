"""Evaluation-server submissions: GOT-10k and TrackingNet zips, written from result folders and checked.

Formats (what the servers read; format slips are a common reason for rejected submissions):

- **GOT-10k**: ``<seq>/<seq>_001.txt`` (``_002``, ``_003`` for the 3-run protocol of stochastic trackers),
  one ``x,y,w,h`` line per frame, comma-separated; ``<seq>/<seq>_time.txt`` with one line per frame
  and one comma-separated column per run (seconds). Paths sit at the top of the zip.
- **TrackingNet**: ``<seq>.txt`` at the top of the zip, one comma-separated ``x,y,w,h`` line per frame.

Every sequence of the split must be there with one row per frame; values must be finite numbers.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chattracker.errors import InputError
from chattracker.results import format_boxes, format_float
from chattracker_eval.datasets.base import Benchmark
from chattracker_eval.textfile import MalformedFileError, read_table

FORMATS = ("got10k", "trackingnet")
MAX_RUNS = {"got10k": 3, "trackingnet": 1}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class PackedSubmission:
    path: Path
    sequences: int
    runs: int
    files: int


def box_member(fmt: str, name: str, run: int) -> str:
    return f"{name}/{name}_{run:03d}.txt" if fmt == "got10k" else f"{name}.txt"


def expected_members(fmt: str, benchmark: Benchmark, runs: int) -> dict[str, tuple[str, int, int]]:
    """``member -> (sequence, rows, columns)`` of a complete submission."""
    members = {}
    for sequence in benchmark:
        for run in range(1, runs + 1):
            members[box_member(fmt, sequence.name, run)] = (sequence.name, len(sequence), 4)
        if fmt == "got10k":
            members[f"{sequence.name}/{sequence.name}_time.txt"] = (sequence.name, len(sequence), runs)
    return members


def _read_rows(path: Path, rows: int, columns: int) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path} is missing")
    table = read_table(path)
    if table.ndim != 2 or (table.size and table.shape[1] < columns):
        raise MalformedFileError(f"{path}: expected {columns} value(s) per line")
    table = table[:, :columns] if table.size else np.zeros((0, columns))
    if len(table) != rows:
        raise InputError(f"{path} has {len(table)} line(s) but the sequence has {rows} frame(s)")
    if not np.isfinite(table).all():
        bad = int(np.flatnonzero(~np.isfinite(table).all(axis=1))[0]) + 1
        raise InputError(f"{path}: line {bad} is not finite (the servers refuse NaN/inf; hold the last box instead)")
    return table


def submission_entries(fmt: str, benchmark: Benchmark, run_folders: list[Path]) -> dict[str, str]:
    """Zip member name -> text, from result folders of ``<seq>.txt`` (and ``<seq>_time.txt``), one per run."""
    if fmt not in FORMATS:
        raise InputError(f"unknown submission format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not 1 <= len(run_folders) <= MAX_RUNS[fmt]:
        raise InputError(f"{fmt} takes 1 to {MAX_RUNS[fmt]} result folder(s) (runs), got {len(run_folders)}")
    for folder in run_folders:
        if not Path(folder).is_dir():
            raise InputError(f"results folder {folder} does not exist")
    entries: dict[str, str] = {}
    missing = [s.name for s in benchmark for f in run_folders if not (Path(f) / f"{s.name}.txt").is_file()]
    if missing:
        raise InputError(f"{len(missing)} result file(s) missing for {fmt}, e.g. {', '.join(missing[:5])}")
    for sequence in benchmark:
        times = []
        for run, folder in enumerate(run_folders, start=1):
            boxes = _read_rows(Path(folder) / f"{sequence.name}.txt", len(sequence), 4)
            entries[box_member(fmt, sequence.name, run)] = format_boxes(boxes)
            if fmt == "got10k":
                times.append(_read_rows(Path(folder) / f"{sequence.name}_time.txt", len(sequence), 1)[:, 0])
        if fmt == "got10k":
            lines = [",".join(format_float(t) for t in row) for row in np.stack(times, axis=1)]
            entries[f"{sequence.name}/{sequence.name}_time.txt"] = "\n".join(lines) + "\n"
    return entries


def _line_problem(line: str, columns: int) -> str | None:
    fields = line.split(",")
    if len(fields) != columns:
        separated = "space/tab-separated" if len(line.split()) == columns else f"{len(fields)} comma-separated value(s)"
        return f"{separated}, expected {columns} comma-separated number(s)"
    for field in fields:
        if not _NUMBER.match(field.strip()) or not math.isfinite(float(field)):
            return f"{field.strip()!r} is not a finite number"
    return None


def check_submission(path: str | os.PathLike[str], fmt: str, benchmark: Benchmark) -> list[str]:
    """Every problem found in a submission zip (empty when it is complete and well formed)."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        return [f"{path}: not a readable zip file ({error})"]
    problems: list[str] = []
    with archive:
        names = {n for n in archive.namelist() if not n.endswith("/")}
        runs = 1
        if fmt == "got10k":
            found = [int(m.group(1)) for n in names if (m := re.match(r"^[^/]+/[^/]+_(\d{3})\.txt$", n))]
            runs = max(found, default=1)
            if runs > MAX_RUNS[fmt]:
                problems.append(f"{runs} runs found; GOT-10k takes at most {MAX_RUNS[fmt]} (_001 .. _003)")
                runs = MAX_RUNS[fmt]
        expected = expected_members(fmt, benchmark, runs)
        missing = sorted(set(expected) - names)
        extra = sorted(names - set(expected))
        if missing:
            nested = [n for n in extra if any(n.endswith("/" + m) for m in missing[:50])]
            hint = " (files are inside a folder: they must sit at the top of the zip)" if nested else ""
            problems.append(f"{len(missing)} file(s) missing, e.g. {', '.join(missing[:5])}{hint}")
        if extra:
            problems.append(f"{len(extra)} unexpected file(s), e.g. {', '.join(extra[:5])}")
        for member in sorted(set(expected) & names):
            _, rows, columns = expected[member]
            try:
                text = archive.read(member).decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{member}: not UTF-8 text")
                continue
            lines = text.splitlines()
            while lines and not lines[-1].strip():
                lines.pop()
            if len(lines) != rows:
                problems.append(f"{member}: {len(lines)} line(s), the sequence has {rows} frame(s)")
            for number, line in enumerate(lines, start=1):
                problem = _line_problem(line.strip(), columns)
                if problem:
                    problems.append(f"{member} line {number}: {problem}")
                    break
    return problems


def write_submission(path: str | os.PathLike[str], fmt: str, benchmark: Benchmark,
                     run_folders: list[Path]) -> PackedSubmission:
    """Write the zip atomically, and only once it passes :func:`check_submission`."""
    path = Path(path)
    entries = submission_entries(fmt, benchmark, [Path(f) for f in run_folders])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for member, text in entries.items():
                archive.writestr(member, text)
        problems = check_submission(tmp, fmt, benchmark)
        if problems:
            raise InputError(f"the packed submission fails its own checks: {problems[0]}")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the zip is meant to be uploaded by anyone
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return PackedSubmission(path, len(benchmark), len(run_folders), len(entries))

