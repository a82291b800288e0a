"""Reading numeric text tables (boxes, flags) the way the toolkits' ``dlmread`` does.

Benchmarks mix comma, tab and space delimiters, CRLF line ends and trailing spaces; all of them are
accepted here. A token that is not a number is an error naming the file and line, never a silent 0.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from chattracker.errors import InputError

logger = logging.getLogger(__name__)

_SPACES = re.compile(r"[\s;]+")


class MalformedFileError(InputError):
    """A numeric text file that cannot be read as a table."""


def _fields(line: str) -> list[str]:
    if "," in line:
        parts = [part.strip() for part in line.split(",")]
        if parts and parts[-1] == "":
            parts.pop()  # a trailing comma ends the row, it adds no column
        # dlmread reads an empty field between two commas as 0.
        return [part if part else "0" for part in parts]
    return [part for part in _SPACES.split(line) if part]


def read_table(path: str | os.PathLike[str], columns: int | None = None) -> np.ndarray:
    """Rows of floats from a text file (comma, tab or whitespace separated; ``nan`` allowed).

    With ``columns`` every row must have at least that many values and extra ones are dropped.
    Blank lines at the end are ignored; a blank line inside the table is an error.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="strict")
    except UnicodeDecodeError:
        raise MalformedFileError(f"{path}: not a text file") from None
    except OSError as error:
        raise MalformedFileError(f"{path}: cannot read ({error.strerror or error})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    fast = _read_uniform(lines, columns)
    if fast is not None:
        return fast
    rows: list[list[float]] = []
    for number, line in enumerate(lines, start=1):
        fields = _fields(line.strip())
        if not fields:
            raise MalformedFileError(f"{path}: line {number} is empty inside the table")
        try:
            values = [float(field) for field in fields]
        except ValueError:
            raise MalformedFileError(f"{path}: line {number} is not a row of numbers: {line.strip()[:80]!r}") from None
        if columns is not None:
            if len(values) < columns:
                raise MalformedFileError(
                    f"{path}: line {number} has {len(values)} value(s), expected {columns}: {line.strip()[:80]!r}")
            values = values[:columns]
        rows.append(values)
    if not rows:
        return np.zeros((0, columns or 0), dtype=np.float64)
    width = {len(row) for row in rows}
    if len(width) != 1:
        raise MalformedFileError(f"{path}: rows have different numbers of values ({sorted(width)})")
    return np.asarray(rows, dtype=np.float64)


_TO_SPACE = str.maketrans({",": " ", "\t": " ", ";": " "})


def _read_uniform(lines: list[str], columns: int | None) -> np.ndarray | None:
    """Fast path for the common case (every row has the same count of plain numbers); ``None``
    sends the file through the line-by-line reader, which reports problems precisely."""
    if not lines:
        return None
    joined = "\n".join(lines)
    if _EMPTY_FIELD.search(joined):
        return None
    rows = joined.translate(_TO_SPACE).split("\n")
    counts = set(map(len, map(str.split, rows)))
    if len(counts) != 1:
        return None
    width = counts.pop()
    if width == 0 or (columns is not None and width < columns):
        return None
    try:
        table = np.array(" ".join(rows).split(), dtype=np.float64).reshape(len(rows), width)
    except ValueError:
        return None
    return table[:, :columns] if columns is not None else table


_EMPTY_FIELD = re.compile(r",\s*(,|$)", re.MULTILINE)


def read_boxes(path: str | os.PathLike[str]) -> np.ndarray:
    """``(N, 4)`` boxes ``x, y, w, h`` from a ground-truth or result file."""
    return read_table(path, columns=4)


def read_flags(path: str | os.PathLike[str]) -> np.ndarray:
    """0/1 flags, one per frame, from a file with one flag per line or all flags on one line."""
    table = read_table(path)
    return table.reshape(-1) if table.size else np.zeros(0)


def read_text(path: str | os.PathLike[str]) -> str:
    """A language file's sentence, whitespace-trimmed (``""`` when the file is empty)."""
    return " ".join(Path(path).read_text(encoding="utf-8-sig", errors="replace").split())
