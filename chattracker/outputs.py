"""The output folder of one command run (track, demo, describe): built in a staging folder beside it and
published all at once, so a failed or interrupted run leaves the previous results whole, and results of
another run are never replaced without ``--overwrite``."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from chattracker.errors import InputError
from chattracker.results import make_shareable

logger = logging.getLogger(__name__)

# Frame folders named like this (OTB img/, VOT and TNL2K imgs/, VOT color/) say nothing: their sequence does.
GENERIC_FRAME_FOLDERS = {"img", "imgs", "color", "images", "frames"}
# Staging folders are ``.<name>.partial-<pid>-<random>``: the pid tells a killed run's folder from a live one.
STAGING_PID = re.compile(r"\.partial-(\d+)-[^/]*$")
# A full disk or quota, a read-only or size-limited file system: no retry helps, the user must make room.
NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def default_name(source: str | os.PathLike[str]) -> str:
    """A run's default folder name: the source's name, or its sequence's when the frames sit in ``img/`` etc.

    ``Crossing/img`` -> ``Crossing``; ``Crossing/img/0001.jpg`` -> ``Crossing_0001``; ``clip.mp4`` -> ``clip``."""
    path = Path(os.path.abspath(source))
    if path.is_dir():
        return path.parent.name if path.name.lower() in GENERIC_FRAME_FOLDERS and path.parent.name else path.name
    if path.parent.name.lower() in GENERIC_FRAME_FOLDERS and path.parent.parent.name:
        return f"{path.parent.parent.name}_{path.stem}"
    return path.stem


def free_folder(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ``-3`` ... when taken: default names never replace earlier runs."""
    candidate, number = root / name, 2
    while candidate.exists():
        candidate, number = root / f"{name}-{number}", number + 1
    return candidate


class RunFolder:
    """Stage a run's files, then swap them in for ``out`` in one rename.

    ``record`` is the file every run of this command writes (``track.json``, ``rpo.json``): a non-empty folder
    without it is not one of ours and is refused even with ``overwrite``. Writability is checked here, before
    any work starts."""

    def __init__(self, out: str | os.PathLike[str], record: str, overwrite: bool = False) -> None:
        self.out = Path(out)
        self._target = Path(os.path.abspath(self.out))
        if self._target.exists() and not self._target.is_dir():
            raise InputError(f"--out {self.out} is a file, not a folder")
        if self._target.is_dir() and any(self._target.iterdir()):
            if not (self._target / record).is_file():
                raise InputError(f"--out {self.out} is not empty and holds no {record}: not a result folder of this "
                                 "command, so it is never replaced; choose another --out")
            if not overwrite:
                raise InputError(f"--out {self.out} already holds the results of another run; pass --overwrite to "
                                 "replace them, or choose another --out")
            if not os.access(self._target, os.W_OK):
                raise InputError(f"--out {self.out} is not writable")
        try:
            self._target.parent.mkdir(parents=True, exist_ok=True)
            self.staging = make_staging(self._target)
        except OSError as error:
            raise InputError(f"cannot write into {self.out.parent}: {(error.strerror or str(error)).lower()}") from None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: object) -> None:
        self.discard()
        if isinstance(error, OSError) and error.errno in NO_ROOM:
            raise no_room(error, self.out) from None

    def discard(self) -> None:
        """Drop the staging folder (after publishing it is gone already)."""
        shutil.rmtree(self.staging, ignore_errors=True)

    def publish(self) -> list[str]:
        """Replace ``out`` by the staged files in one rename; the old folder survives any failure."""
        return publish_folder(self.staging, self._target)


def no_room(error: OSError, out: Path, moved: int = 0) -> InputError:
    """A full disk met while writing into a staging folder, told as the folder the user named (the staging
    path means nothing to them); ``moved``: files already moved in when it struck."""
    done = f"{moved} file(s) there were replaced" if moved else "nothing was written there"
    return InputError(f"cannot write the results into {out}: {os.strerror(error.errno).lower()} ({done})")


@contextlib.contextmanager
def staged_into(out: Path) -> Iterator[Path]:
    """A staging folder whose files are moved into ``out`` (replacing same-named ones, keeping the others)
    once the block succeeds: a failure, a full disk included, leaves ``out`` as it was."""
    out.mkdir(parents=True, exist_ok=True)
    staging = make_staging(out)
    moved = 0
    try:
        yield staging
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            target = out / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)  # the one step here that can still need room
            make_shareable(path)
            os.replace(path, target)
            moved += 1
    except OSError as error:
        if error.errno in NO_ROOM:
            raise no_room(error, out, moved) from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def make_staging(out: Path) -> Path:
    """A hidden folder beside ``out`` that names this process (``.out.partial-<pid>-xxxx``), so a later run can
    tell the staging folder of a killed run (``kill -9`` leaves it behind) from one still being written, and
    removes it."""
    remove_stale_staging(out.parent)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))


def remove_stale_staging(parent: Path) -> list[Path]:
    """Remove the staging folders in ``parent`` whose process has died; returns them."""
    removed = []
    for path in parent.glob(".*.partial-*") if parent.is_dir() else ():
        match = STAGING_PID.search(path.name)
        if not path.is_dir() or match is None or _alive(int(match[1])):
            continue
        shutil.rmtree(path, ignore_errors=True)
        logger.info("removed %s, left by a run that was killed", path)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def publish_folder(staging: Path, out: Path) -> list[str]:
    """Swap the finished ``staging`` folder in for ``out`` (same parent); returns the published file names."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    names = sorted(p.name for p in staging.iterdir() if not p.name.startswith("."))
    make_shareable(staging, folder=True)
    if not out.exists():
        os.rename(staging, out)
        return names
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / "previous")
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old / "previous", out)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return names
