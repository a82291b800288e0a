"""TrackingNet (Müller et al., ECCV 2018): ``<root>/<SPLIT>/{anno/<seq>.txt, frames/<seq>/<i>.jpg}``
with ``SPLIT`` = ``TEST`` (511 videos, first box only) or ``TRAIN_0`` .. ``TRAIN_11`` (full ground truth).
Frames are numbered from 0 (``0.jpg``, ``1.jpg``, ...).

``--root`` is the dataset root (the ``TEST`` split) or one split folder. As for GOT-10k, the test
split loads with NaN rows after the first box and one row per image; it is packed, not scored.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from chattracker.errors import InputError
from chattracker.video import list_images
from chattracker_eval.datasets.base import DATASETS, Benchmark, Sequence, SequenceList, image_lister
from chattracker_eval.datasets.got10k import padded_ground_truth
from chattracker_eval.textfile import read_boxes

logger = logging.getLogger(__name__)


def split_folder(root: Path) -> Path:
    if (root / "anno").is_dir():
        return root
    if (root / "TEST" / "anno").is_dir():
        return root / "TEST"
    raise InputError(f"{root}: not a TrackingNet root or split folder (no anno/ in it or in TEST/)")


@DATASETS.register("trackingnet")
def load_trackingnet(root: Path) -> Benchmark:
    folder = split_folder(Path(root))
    sequences = []
    for path in sorted((folder / "anno").glob("*.txt")):
        boxes = read_boxes(path)
        frames = folder / "frames" / path.stem
        if len(boxes) == 1 and frames.is_dir():
            boxes = padded_ground_truth(boxes, len(list_images(frames)))
        elif len(boxes) == 1:
            logger.warning("trackingnet: %s has its first box only and no frames/%s/ to count its frames",
                           path.stem, path.stem)
        lister = image_lister(frames) if frames.is_dir() else None
        sequences.append(Sequence(path.stem, boxes, np.zeros(len(boxes), dtype=bool), "trackingnet", "", {}, lister))
    if not sequences:
        raise InputError(f"{folder}/anno: no <seq>.txt annotation files")
    return Benchmark("trackingnet", SequenceList(sequences), {}, f"trackingnet {folder}")
