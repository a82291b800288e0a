"""TNL2K, from a dataset root or from the official toolkit's annotation folder.

Dataset root: ``<root>/<seq>/{imgs/, groundtruth.txt, language.txt}`` (frame names and extensions
vary: natural sort, image files only). Toolkit: ``annos/gt_rect/<seq>.txt``, ``annos/absent/``,
``annos/att/<seq>_attribute.txt``, ``sequence_evaluation_config/TNL2K_testing_set.txt``. Absent =
all-zero ground-truth row; the toolkit's absent files agree (one has an extra line, cut to N).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from chattracker.errors import InputError
from chattracker_eval.datasets.base import (
    DATASETS, Benchmark, Sequence, SequenceList, check_absent_length, image_lister, read_list_file,
    report_missing, warn_if_no_language,
)
from chattracker_eval.datasets.lasot import read_attributes
from chattracker_eval.textfile import read_boxes, read_flags, read_text

logger = logging.getLogger(__name__)

# Order of the 17 flags in annos/att/<seq>_attribute.txt (the toolkit's evaluation script).
TNL2K_ATTRIBUTES = {
    "CM": "Camera Motion", "ROT": "Rotation", "DEF": "Deformation", "FOC": "Full Occlusion",
    "IV": "Illumination Variation", "OV": "Out-of-View", "POC": "Partial Occlusion", "VC": "Viewpoint Change",
    "SV": "Scale Variation", "BC": "Background Clutter", "MB": "Motion Blur", "ARC": "Aspect Ratio Change",
    "LR": "Low Resolution", "FM": "Fast Motion", "AS": "Adversarial Samples", "TC": "Thermal Crossover",
    "MS": "Modality Switch",
}

LIST_FILES = ("TNL2K_testing_set.txt", "sequence_evaluation_config/TNL2K_testing_set.txt", "testing_set.txt")
FRAME_FOLDERS = ("imgs", "img", "images")


def zero_rows(boxes: np.ndarray) -> np.ndarray:
    return (boxes == 0).all(axis=1)


def _find_list(root: Path) -> Path | None:
    for relative in LIST_FILES:
        if (root / relative).is_file():
            return root / relative
    return None


def _absent(name: str, boxes: np.ndarray, absent_file: Path | None) -> np.ndarray:
    from_boxes = zero_rows(boxes)
    if absent_file is None or not absent_file.is_file():
        return from_boxes
    from_file = check_absent_length(name, read_flags(absent_file), len(boxes))
    if not np.array_equal(from_file, from_boxes):
        logger.warning("sequence %s: absent file marks %d frame(s), all-zero boxes %d; using the file", name,
                       int(from_file.sum()), int(from_boxes.sum()))
    return from_file


def _toolkit_sequence(root: Path, name: str, languages: dict[str, str]) -> Sequence:
    annos = root / "annos"
    boxes = read_boxes(annos / "gt_rect" / f"{name}.txt")
    absent = _absent(name, boxes, annos / "absent" / f"{name}.txt")
    attributes = read_attributes(annos / "att" / f"{name}_attribute.txt", TNL2K_ATTRIBUTES, name)
    return Sequence(name, boxes, absent, "tnl2k", languages.get(name, ""), attributes, None)


def _root_sequence(folder: Path, attribute_root: Path | None) -> Sequence:
    name = folder.name
    boxes = read_boxes(folder / "groundtruth.txt")
    absent = _absent(name, boxes, None)
    language_file = folder / "language.txt"
    language = read_text(language_file) if language_file.is_file() else ""
    warn_if_no_language(name, language, True)
    attributes = {}
    if attribute_root is not None:
        attributes = read_attributes(attribute_root / f"{name}_attribute.txt", TNL2K_ATTRIBUTES, name)
    frames = next((folder / f for f in FRAME_FOLDERS if (folder / f).is_dir()), folder / "imgs")
    return Sequence(name, boxes, absent, "tnl2k", language, attributes, image_lister(frames))


def _toolkit_languages(root: Path) -> dict[str, str]:
    """Sentences the toolkit ships (the corrected ones of ``updated_language_4_videos``)."""
    languages = {}
    for folder in ("revised_train_annotations", "updated_language_4_videos"):
        for path in sorted((root / folder).glob("*/language.txt")):
            languages[path.parent.name] = read_text(path)
    return languages


@DATASETS.register("tnl2k")
def load_tnl2k(root: Path, split: str = "test") -> Benchmark:
    """The 700 test videos when a test list is found (``split='test'``), else every video present."""
    root = Path(root)
    if (root / "gt_rect").is_dir():
        root = root.parent  # the toolkit's annos/ folder itself was given
    if (root / "annos" / "gt_rect").is_dir():
        available = {p.stem for p in (root / "annos" / "gt_rect").glob("*.txt")}
        list_file = _find_list(root)
        if split == "test" and list_file is not None:
            listed = read_list_file(list_file)
            report_missing("tnl2k", listed, available)
            names = [n for n in listed if n in available]
        else:
            names = sorted(available)
        languages = _toolkit_languages(root)
        sequences = SequenceList(_toolkit_sequence(root, n, languages) for n in names)
        return Benchmark("tnl2k", sequences, dict(TNL2K_ATTRIBUTES), f"toolkit {root}")
    folders = {p.parent.name: p.parent for p in root.glob("*/groundtruth.txt")}
    if (root / "groundtruth.txt").is_file():
        folders[root.name] = root
    if not folders:
        raise InputError(f"{root}: no TNL2K sequences (<seq>/groundtruth.txt) and no annos/gt_rect folder")
    list_file = _find_list(root)
    if split == "test" and list_file is not None:
        listed = read_list_file(list_file)
        report_missing("tnl2k", listed, set(folders))
        names = [n for n in listed if n in folders]
    else:
        names = sorted(folders)
    attribute_root = root / "att" if (root / "att").is_dir() else None
    return Benchmark("tnl2k", SequenceList(_root_sequence(folders[n], attribute_root) for n in names),
                     dict(TNL2K_ATTRIBUTES), f"dataset {root}")
