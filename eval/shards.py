"""Shards for clusters without Ray: ``--shard I/N`` runs a deterministic 1/N of the sequences, and
per-sequence locks keep two processes sharing one results folder from running the same sequence.

Shard I of N (1-based, like ``split -n K/N``; a Slurm array ``--array=1-N`` passes ``$SLURM_ARRAY_TASK_ID``)
takes the sequences at positions I-1, I-1+N, I-1+2N, ... of the benchmark's list: round-robin, so long and
short classes spread evenly over the shards, and the union of all N shards is every sequence exactly once.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import TypeVar

from chattracker.errors import InputError

LOCK_FOLDER = ".locks"  # hidden: toolkits read <seq>.txt only

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """``"3/8"`` -> (3, 8); anything else is one clear error."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise InputError(f"--shard must be I/N (e.g. 1/4), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise InputError(f"--shard {text}: I must be 1..N and N at least 1 (shards are numbered from 1)")
    return index, count


def shard_of(items: list[T], index: int, count: int) -> list[T]:
    """Shard ``index`` (1-based) of ``count``: every ``count``-th item starting at position ``index - 1``."""
    return items[index - 1::count]


class SequenceLock:
    """An exclusive ``flock`` on ``<results>/.locks/<seq>.lock`` while a sequence runs. The kernel drops it
    when its holder dies (no stale locks after a kill); ``flock`` works across NFS clients on Linux >= 2.6.12."""

    def __init__(self, results_dir: Path, name: str) -> None:
        self.path = results_dir / LOCK_FOLDER / f"{name}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True when this process now holds the sequence; False when another does."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
