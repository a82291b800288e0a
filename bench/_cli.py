"""What the benchmark scripts share: the dataset arguments and loading, the visible ground-truth box,
the JSON report printed (and written atomically), and bad input as one ``bench: error: ...`` line with
exit status 2, nothing written."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Callable

import numpy as np

from chattracker.errors import ChatTrackerError
from chattracker.results import atomic_write_text
from chattracker.types import Box


def emit_report(report: dict[str, Any], path: str | None) -> None:
    """Print ``report`` as JSON after the table, and write it to ``path`` (when given) in one step."""
    text = json.dumps(report, indent=1, default=float)
    if path:
        atomic_write_text(path, text + "\n")
    print(text)


def machine_info() -> dict[str, Any]:
    """What a speed ratio depends on, for comparing reports across machines: the same commit measured
    the fusion wrapper at 0.62x its base on one 2-core machine and 0.56x on another."""
    import platform

    import cv2
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__, "numpy": np.__version__,
            "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None}


def run_main(main: Callable[[], int]) -> None:
    try:
        sys.exit(main())
    except (ChatTrackerError, OSError) as error:  # bad input: one line, exit 2, nothing written
        print(f"bench: error: {error}", file=sys.stderr)
        sys.exit(2)


def add_dataset_arguments(parser) -> str:
    """``--dataset``, ``--root``, ``--sequences``, ``--base``, ``--json`` and ``--no-progress``, as every
    per-sequence bench takes them; returns the shared data folder (``$CHATTRACKER_SHARED_DATA``, else
    ``../shared/data``)."""
    data = os.environ.get("CHATTRACKER_SHARED_DATA", "../shared/data")
    parser.add_argument("--dataset", default="fusion_dev", help="any dataset the eval loaders read")
    parser.add_argument("--root", default=data, help="the dataset root (fusion_dev: the shared data folder)")
    parser.add_argument("--sequences", help="comma-separated subset, by name")
    parser.add_argument("--base", default="nanotrack_v2", help="registered base tracker (default nanotrack_v2)")
    parser.add_argument("--json", help="also write the JSON report here")
    parser.add_argument("--no-progress", action="store_true")
    return data


def load_sequences(args, data: str):
    """The sequences ``args`` name (weights found in the shared data folder unless set otherwise)."""
    from chattracker_eval.datasets import load_dataset

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("CHATTRACKER_WEIGHTS", data)
    sequences = load_dataset(args.dataset, args.root).sequences
    if args.sequences:
        sequences = sequences.select([s.strip() for s in args.sequences.split(",") if s.strip()])
    return sequences


def truth_box(sequence, index: int) -> Box | None:
    """The ground-truth box of frame ``index``; None where the target is not visible (absent flag, NaN
    row as in UAV123, or an empty box)."""
    row = sequence.ground_truth[index]
    if sequence.absent[index] or not np.all(np.isfinite(row)) or row[2] <= 0 or row[3] <= 0:
        return None
    return Box.from_any(row)
