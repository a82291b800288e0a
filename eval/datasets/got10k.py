"""GOT-10k (Huang et al., TPAMI 2019): ``<root>/{train,val,test}/list.txt`` and one folder per sequence
with ``%08d.jpg`` frames, ``groundtruth.txt`` (comma-separated ``x,y,w,h``) and, outside the test split,
``absence.label`` (1 = target absent) and ``cover.label`` (visible ratio 0-8).

``--root`` is the dataset root (the ``val`` split, which has ground truth) or one split folder. The
test split's ground truth is its first box only: the other rows load as NaN, the frame count comes
from the images, and such a split can be run and packed (``chattracker pack``) but not scored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chattracker.errors import InputError
from chattracker.video import list_images
from chattracker_eval.datasets.base import (
    DATASETS, Benchmark, Sequence, SequenceList, check_absent_length, image_lister, read_list_file, report_missing,
)
from chattracker_eval.textfile import read_boxes, read_flags

SPLITS = ("val", "test", "train")


def split_folder(root: Path, default: str = "val") -> Path:
    """``root`` when it is a split folder (has ``list.txt``), else ``root/<default>``."""
    if (root / "list.txt").is_file():
        return root
    if (root / default / "list.txt").is_file():
        return root / default
    raise InputError(f"{root}: not a GOT-10k root or split folder (no list.txt in it or in {default}/)")


def padded_ground_truth(boxes: np.ndarray, frames: int) -> np.ndarray:
    """A first-box-only ground truth padded with NaN rows to one row per frame."""
    padded = np.full((max(frames, len(boxes)), 4), np.nan)
    padded[: len(boxes)] = boxes
    return padded


def _absent(folder: Path, count: int) -> np.ndarray:
    if (folder / "absence.label").is_file():
        return check_absent_length(folder.name, read_flags(folder / "absence.label"), count)
    if (folder / "cover.label").is_file():
        return check_absent_length(folder.name, (read_flags(folder / "cover.label") == 0).astype(float), count)
    return np.zeros(count, dtype=bool)


def got10k_sequence(folder: Path, dataset: str = "got10k") -> Sequence:
    boxes = read_boxes(folder / "groundtruth.txt")
    if len(boxes) == 1:  # test split: only the initial box is public
        boxes = padded_ground_truth(boxes, len(list_images(folder)))
    return Sequence(folder.name, boxes, _absent(folder, len(boxes)), dataset, "", {}, image_lister(folder))


@DATASETS.register("got10k")
def load_got10k(root: Path) -> Benchmark:
    folder = split_folder(Path(root))
    listed = read_list_file(folder / "list.txt")
    found = {name for name in listed if (folder / name / "groundtruth.txt").is_file()}
    report_missing("got10k", listed, found)
    sequences = SequenceList(got10k_sequence(folder / name) for name in listed if name in found)
    return Benchmark("got10k", sequences, {}, f"got10k {folder}")
