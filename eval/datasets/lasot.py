"""LaSOT and LaSOT_ext, from a dataset root or from the official toolkit's annotation folder.

Dataset root: ``<root>/<class>/<class>-<k>/{img/%08d.jpg, groundtruth.txt, full_occlusion.txt,
out_of_view.txt, nlp.txt}``. Toolkit: ``<root>/annos/<seq>.txt``, ``annos/absent/``, ``annos/att/``,
``annos/nlp/`` and ``sequence_evaluation_config/testing_set.txt``. Absent = full occlusion OR out of
view; it is never inferred from the box (thousands of absent frames carry real boxes).
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
from chattracker_eval.textfile import read_boxes, read_flags, read_text

logger = logging.getLogger(__name__)

# Order of the 14 flags in annos/att/<seq>.txt (the toolkit's evaluation script).
LASOT_ATTRIBUTES = {
    "IV": "Illumination Variation", "POC": "Partial Occlusion", "DEF": "Deformation", "MB": "Motion Blur",
    "CM": "Camera Motion", "ROT": "Rotation", "BC": "Background Clutter", "VC": "Viewpoint Change",
    "SV": "Scale Variation", "FOC": "Full Occlusion", "FM": "Fast Motion", "OV": "Out-of-View",
    "LR": "Low Resolution", "ARC": "Aspect Ratio Change",
}

LIST_FILES = ("testing_set.txt", "sequence_evaluation_config/testing_set.txt")


def is_toolkit_layout(root: Path) -> bool:
    return (root / "annos").is_dir()


def _find_list(root: Path) -> Path | None:
    for relative in LIST_FILES:
        if (root / relative).is_file():
            return root / relative
    return None


def read_attributes(path: Path, names: dict[str, str], sequence: str) -> dict[str, bool]:
    if not path.is_file():
        return {}
    flags = read_flags(path)
    if len(flags) != len(names):
        logger.warning("sequence %s: %d attribute flag(s) in %s, expected %d; attributes ignored", sequence,
                       len(flags), path, len(names))
        return {}
    return {short: bool(flag) for short, flag in zip(names, flags)}


def _toolkit_sequence(root: Path, name: str, benchmark: str) -> Sequence:
    annos = root / "annos"
    boxes = read_boxes(annos / f"{name}.txt")
    absent_file = annos / "absent" / f"{name}.txt"
    if absent_file.is_file():
        absent = check_absent_length(name, read_flags(absent_file), len(boxes))
    else:
        logger.warning("sequence %s: no %s; every frame counts as present", name, absent_file)
        absent = np.zeros(len(boxes), dtype=bool)
    nlp = annos / "nlp" / f"{name}.txt"
    language = read_text(nlp) if nlp.is_file() else ""
    warn_if_no_language(name, language, nlp.is_file())
    attributes = read_attributes(annos / "att" / f"{name}.txt", LASOT_ATTRIBUTES, name)
    return Sequence(name, boxes, absent, benchmark, language, attributes, None)


def _root_sequence(folder: Path, benchmark: str, attribute_root: Path | None) -> Sequence:
    name = folder.name
    boxes = read_boxes(folder / "groundtruth.txt")
    flags = []
    for part in ("full_occlusion.txt", "out_of_view.txt"):
        if (folder / part).is_file():
            flags.append(check_absent_length(name, read_flags(folder / part), len(boxes)))
        else:
            logger.warning("sequence %s: no %s; its frames count as present", name, part)
    absent = np.logical_or.reduce(flags) if flags else np.zeros(len(boxes), dtype=bool)
    nlp = folder / "nlp.txt"
    language = read_text(nlp) if nlp.is_file() else ""
    warn_if_no_language(name, language, True)
    attributes = {}
    if attribute_root is not None:
        attributes = read_attributes(attribute_root / f"{name}.txt", LASOT_ATTRIBUTES, name)
    return Sequence(name, boxes, absent, benchmark, language, attributes, image_lister(folder / "img"))


def load_lasot_like(root: Path, benchmark: str, split: str = "test") -> Benchmark:
    """Sequences of the test list when one is found (``split='test'``), else every sequence present."""
    root = Path(root)
    if root.name == "annos" and (root / "absent").is_dir():
        root = root.parent  # the toolkit's annos/ folder itself was given
    if is_toolkit_layout(root):
        available = {p.stem for p in (root / "annos").glob("*.txt")}
        list_file = _find_list(root)
        if split == "test" and list_file is not None:
            listed = read_list_file(list_file)
            report_missing(benchmark, listed, available)
            names = [n for n in listed if n in available]
        else:
            names = sorted(available)
        sequences = SequenceList(_toolkit_sequence(root, n, benchmark) for n in names)
        return Benchmark(benchmark, sequences, dict(LASOT_ATTRIBUTES), f"toolkit {root}")
    folders = {p.parent.name: p.parent for p in root.glob("*/*/groundtruth.txt")}
    folders.update({p.parent.name: p.parent for p in root.glob("*/groundtruth.txt") if p.parent != root})
    if (root / "groundtruth.txt").is_file():
        folders[root.name] = root
    if not folders:
        raise InputError(f"{root}: no LaSOT sequences (<class>/<class>-<k>/groundtruth.txt) and no annos/ folder")
    list_file = _find_list(root)
    if split == "test" and list_file is not None:
        listed = read_list_file(list_file)
        report_missing(benchmark, listed, set(folders))
        names = [n for n in listed if n in folders]
    else:
        if split == "test" and benchmark == "lasot":
            logger.warning("lasot: no testing_set.txt in %s; scoring all %d sequence(s) found, not the 280-video "
                           "test list (copy the toolkit's testing_set.txt there to restrict)", root, len(folders))
        names = sorted(folders)
    attribute_root = root / "att" if (root / "att").is_dir() else None
    sequences = SequenceList(_root_sequence(folders[n], benchmark, attribute_root) for n in names)
    return Benchmark(benchmark, sequences, dict(LASOT_ATTRIBUTES), f"dataset {root}")


@DATASETS.register("lasot")
def load_lasot(root: Path, split: str = "test") -> Benchmark:
    return load_lasot_like(root, "lasot", split)


@DATASETS.register("lasot_ext")
def load_lasot_ext(root: Path, split: str = "all") -> Benchmark:
    """LaSOT_ext (150 videos, 15 classes); it has no separate test list, so all videos are used."""
    return load_lasot_like(root, "lasot_ext", split)
