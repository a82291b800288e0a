"""Any folder of frames with a ``groundtruth.txt``: one sequence, or a parent of several.

Frames are looked for in ``img/``, ``imgs/``, ``color/`` or the folder itself (natural sort, image
files only). ``language.txt``/``nlp.txt`` give the sentence and ``absent.txt`` absent flags, when present;
a ground-truth row of NaN (the UAV123 convention, kept in ``sot_dev``) is an absent frame too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chattracker.errors import InputError
from chattracker_eval.datasets.base import (
    DATASETS, Benchmark, Sequence, SequenceList, check_absent_length, image_lister,
)
from chattracker_eval.textfile import MalformedFileError, read_flags, read_table, read_text

FRAME_FOLDERS = ("img", "imgs", "color", "images")
LANGUAGE_FILES = ("language.txt", "nlp.txt")


def frames_folder(folder: Path) -> Path:
    return next((folder / name for name in FRAME_FOLDERS if (folder / name).is_dir()), folder)


def sequence_folders(root: Path, annotation: str = "groundtruth.txt") -> list[Path]:
    """``root`` itself when it holds ``annotation``, else its sub-folders that do (sorted)."""
    if (root / annotation).is_file():
        return [root]
    folders = sorted(p.parent for p in root.glob(f"*/{annotation}"))
    if not folders:
        raise InputError(f"{root}: no {annotation} in it or in any sub-folder")
    return folders


def folder_language(folder: Path) -> str:
    for name in LANGUAGE_FILES:
        if (folder / name).is_file():
            return read_text(folder / name)
    return ""


def nan_rows_absent(boxes: np.ndarray) -> np.ndarray:
    """A ground-truth row with NaN marks a frame without the target (UAV123's convention)."""
    return np.isnan(boxes).any(axis=1)


def folder_sequence(folder: Path, boxes: np.ndarray, dataset: str) -> Sequence:
    absent_file = folder / "absent.txt"
    absent = nan_rows_absent(boxes)
    if absent_file.is_file():
        absent |= check_absent_length(folder.name, read_flags(absent_file), len(boxes))
    return Sequence(folder.name, boxes, absent, dataset, folder_language(folder), {},
                    image_lister(frames_folder(folder)))


def polygons_to_boxes(table: np.ndarray, source: Path) -> np.ndarray:
    """``(N, 8)`` corner polygons or ``(N, 4)`` boxes -> ``(N, 4)`` axis-aligned x, y, w, h."""
    if table.shape[1] == 4:
        return table
    if table.shape[1] < 6 or table.shape[1] % 2:
        raise MalformedFileError(f"{source}: expected 4 values (box) or an even number >= 6 (polygon) per line, "
                                 f"got {table.shape[1]}")
    xs, ys = table[:, 0::2], table[:, 1::2]
    x1, y1 = xs.min(axis=1), ys.min(axis=1)
    return np.stack([x1, y1, xs.max(axis=1) - x1, ys.max(axis=1) - y1], axis=1)


def read_ground_truth(path: Path) -> np.ndarray:
    """Boxes from ``groundtruth.txt``; polygon rows become their axis-aligned boxes."""
    return polygons_to_boxes(read_table(path), path)


@DATASETS.register("folder")
def load_folder(root: Path) -> Benchmark:
    sequences = SequenceList(folder_sequence(f, read_ground_truth(f / "groundtruth.txt"), "folder")
                             for f in sequence_folders(Path(root)))
    return Benchmark("folder", sequences, {}, f"folder {root}")
