"""Result files in the layout other toolkits read unchanged (DESIGN.md section 3).

``<seq>.txt``: one ``x,y,w,h`` line per frame, comma-separated floats, no header, frame 1 = init box.
``<seq>_time.txt``: one time per frame in seconds. Both are written atomically (temp file + rename)
so an interrupted run never leaves a partial file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        make_shareable(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_shareable(path: str | os.PathLike[str], folder: bool = False) -> None:
    """mkstemp/mkdtemp create 0600/0700; results are meant to be read by other users' toolkits too."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_UMASK)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which races with other threads.
_UMASK = _read_umask()


def format_float(value: float) -> str:
    """Shortest round-trip text for a float; never truncated to an integer."""
    return repr(float(value)) if np.isfinite(value) else "nan"


def format_boxes(boxes: Iterable[Sequence[float]]) -> str:
    lines = [",".join(format_float(v) for v in box) for box in boxes]
    return "\n".join(lines) + ("\n" if lines else "")


def write_boxes(path: str | os.PathLike[str], boxes: Iterable[Sequence[float]]) -> None:
    atomic_write_text(path, format_boxes(boxes))


def write_times(path: str | os.PathLike[str], times: Iterable[float]) -> None:
    atomic_write_text(path, "".join(f"{format_float(t)}\n" for t in times))


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
