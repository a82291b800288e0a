"""UAV123, UAV123@10fps and UAV20L (Mueller et al., ECCV 2016), in the layout of the official archive.

``<root>/anno/<VERSION>/<seq>.txt`` (comma-separated ``x,y,w,h``), frames in
``<root>/data_seq/<FRAMES>/<folder>/%06d.jpg``: ``UAV123`` and ``UAV20L`` read ``data_seq/UAV123``,
UAV123@10fps reads ``data_seq/UAV123_10fps``. A ``NaN,NaN,NaN,NaN`` row marks a frame where the target
is fully occluded or out of view: it is an absent frame (left out of scoring, kept in the
denominator, as the LaSOT toolkit does with its absent frames).

UAV123@10fps keeps every third frame of the 30 fps videos and renumbers them, so a sequence's first
frame is ``(first_30fps - 1) / 3 + 1`` and its length is its annotation's line count (checked on
``group2_2``: 30 fps frames 907-1771, 10 fps frames 303-591, 289 lines).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from chattracker.errors import InputError
from chattracker_eval.datasets.base import DATASETS, Benchmark, FrameLister, Sequence, SequenceList
from chattracker_eval.datasets.folder import nan_rows_absent
from chattracker_eval.datasets.uav123_frames import UAV123, UAV20L
from chattracker_eval.textfile import read_boxes

logger = logging.getLogger(__name__)

# dataset name -> (annotation folder, frame folder, frame ranges, 30 fps frames per frame)
VERSIONS = {
    "uav123": ("UAV123", "UAV123", UAV123, 1),
    "uav123_10fps": ("UAV123_10fps", "UAV123_10fps", UAV123, 3),
    "uav20l": ("UAV20L", "UAV123", UAV20L, 1),
}


def _frame_lister(folder: Path, first: int, count: int) -> FrameLister:
    def listing() -> list[Path]:
        files = [folder / f"{number:06d}.jpg" for number in range(first, first + count)]
        missing = [path for path in files if not path.is_file()]
        if missing:
            raise InputError(f"{len(missing)} frame(s) missing in {folder}, first {missing[0].name}")
        return files

    return listing


def _anno_root(root: Path, annotation_folder: str) -> Path:
    for candidate in (root / "anno" / annotation_folder, root / annotation_folder, root):
        if candidate.is_dir() and any(candidate.glob("*.txt")):
            return candidate
    raise InputError(f"{root}: no UAV annotations (anno/{annotation_folder}/<seq>.txt)")


def load_uav(root: Path, dataset: str) -> Benchmark:
    annotation_folder, frame_folder, ranges, step = VERSIONS[dataset]
    root = Path(root)
    annotations = _anno_root(root, annotation_folder)
    frames_root = root / "data_seq" / frame_folder
    sequences = []
    for path in sorted(annotations.glob("*.txt")):
        name = path.stem
        boxes = read_boxes(path)
        folder, start, end = ranges.get(name, (name, 1, None))
        if name not in ranges:
            logger.warning("%s: sequence %s is not in the benchmark's frame table; frames %s/%s from 1",
                           dataset, name, frame_folder, name)
        first = (start - 1) // step + 1
        if step == 1 and end is not None and end - start + 1 != len(boxes):
            logger.warning("%s: sequence %s has %d annotation line(s) for frames %d-%d", dataset, name, len(boxes),
                           start, end)
        lister = _frame_lister(frames_root / folder, first, len(boxes)) if frames_root.is_dir() else None
        sequences.append(Sequence(name, boxes, nan_rows_absent(boxes), dataset, "", {}, lister))
    return Benchmark(dataset, SequenceList(sequences), {}, f"{dataset} {root}")


for _name in VERSIONS:
    DATASETS.register(_name)(functools.partial(load_uav, dataset=_name))
