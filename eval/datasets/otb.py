"""OTB-100 and OTB99-lang (Li et al., CVPR 2017: OTB videos with one sentence each).

Root: ``<root>/<Seq>/{img/, groundtruth_rect.txt}``; two-target videos have ``groundtruth_rect.1.txt``
and ``.2.txt`` and become ``<Seq>-1`` / ``<Seq>-2`` (Jogging, Skating2, Human4). Delimiters vary
(comma, tab, space). A few videos start at a later frame (David at 300, ...). A pysot-format JSON
(``OTB100.json``) in the root, or given as the root, supplies boxes, frame names and attributes.
Sentences: ``<root>/OTB_query_test/<Seq>.txt`` (OTB99-lang test split), ``OTB_query_train/``, or a
``language.txt`` beside the frames.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from chattracker.errors import InputError
from chattracker.video import list_images
from chattracker_eval.datasets.base import DATASETS, Benchmark, Sequence, SequenceList, warn_if_no_language
from chattracker_eval.textfile import read_boxes, read_text

logger = logging.getLogger(__name__)

# First frame number of the OTB videos that do not start at 1 (OTB's own sequence configuration).
START_FRAME = {"David": 300, "Tiger1": 6, "BlurCar1": 247, "BlurCar3": 3, "BlurCar4": 18}
QUERY_FOLDERS = ("OTB_query_test", "OTB_query_train")
_GT_NAME = re.compile(r"^groundtruth_rect(?:\.(\d+))?\.txt$")
_NUMBER = re.compile(r"(\d+)")


def _language(root: Path, name: str, folder: Path | None) -> str:
    for query in QUERY_FOLDERS:
        path = root / query / f"{name}.txt"
        if path.is_file():
            return read_text(path)
    if folder is not None and (folder / "language.txt").is_file():
        return read_text(folder / "language.txt")
    return ""


def _frames_from(folder: Path, start: int):
    def listing() -> list[Path]:
        files = list_images(folder)
        for index, path in enumerate(files):
            match = _NUMBER.search(path.stem)
            if match and int(match.group(1)) == start:
                return files[index:]
        return files

    return listing


def _scan_root(root: Path) -> dict[str, tuple[Path, Path]]:
    """``name -> (ground-truth file, sequence folder)`` for every OTB-style folder under ``root``."""
    found: dict[str, tuple[Path, Path]] = {}
    folders = [root] if any(_GT_NAME.match(p.name) for p in root.glob("groundtruth_rect*.txt")) else []
    folders += sorted(p for p in root.iterdir() if p.is_dir())
    for folder in folders:
        files = sorted(p for p in folder.glob("groundtruth_rect*.txt") if _GT_NAME.match(p.name))
        numbered = [p for p in files if _GT_NAME.match(p.name).group(1)]
        if numbered:
            for path in numbered:
                found[f"{folder.name}-{_GT_NAME.match(path.name).group(1)}"] = (path, folder)
        elif files:
            found[folder.name] = (files[0], folder)
    return found


def _from_json(path: Path, image_root: Path, benchmark: str) -> list[Sequence]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable pysot JSON annotation file ({error})") from None
    sequences = []
    for name, entry in data.items():
        boxes = np.asarray(entry["gt_rect"], dtype=np.float64).reshape(-1, 4)
        names = [image_root / n for n in entry.get("img_names", [])]
        lister = (lambda files=names: files) if names and names[0].is_file() else None
        folder = image_root / entry.get("video_dir", name)
        language = _language(image_root, name, folder if folder.is_dir() else None)
        attributes = {attr: True for attr in entry.get("attr", [])}
        sequences.append(Sequence(name, boxes, np.zeros(len(boxes), dtype=bool), benchmark, language, attributes,
                                  lister))
    return sequences


def load_otb_like(root: Path, benchmark: str) -> Benchmark:
    root = Path(root)
    json_file = root if root.is_file() and root.suffix == ".json" else next(iter(sorted(root.glob("OTB*.json"))), None)
    if json_file is not None:
        image_root = json_file.parent
        sequences = _from_json(json_file, image_root, benchmark)
        source = f"pysot json {json_file}"
    else:
        found = _scan_root(root)
        if not found:
            raise InputError(f"{root}: no OTB sequences (<Seq>/groundtruth_rect.txt) and no OTB100.json")
        image_root = root
        sequences = []
        for name, (gt_file, folder) in sorted(found.items()):
            boxes = read_boxes(gt_file)
            base = name.split("-")[0] if name not in START_FRAME else name
            start = START_FRAME.get(base, 1)
            language = _language(root, name, folder)
            sequences.append(Sequence(name, boxes, np.zeros(len(boxes), dtype=bool), benchmark, language, {},
                                      _frames_from(folder / "img", start)))
        source = f"dataset {root}"
    if benchmark == "otb99_lang":
        query_names = {p.stem for p in (image_root / "OTB_query_test").glob("*.txt")}
        if query_names:
            missing = sorted(query_names - {s.name for s in sequences})
            if missing:
                logger.warning("otb99_lang: %d test sentence(s) without a sequence here: %s", len(missing),
                               ", ".join(missing[:10]))
            sequences = [s for s in sequences if s.name in query_names]
        else:
            logger.warning("otb99_lang: no OTB_query_test/ in %s; using all %d sequences", image_root, len(sequences))
        for sequence in sequences:
            warn_if_no_language(sequence.name, sequence.language, True)
    return Benchmark(benchmark, SequenceList(sequences), {}, source)


@DATASETS.register("otb")
def load_otb(root: Path) -> Benchmark:
    return load_otb_like(root, "otb")


@DATASETS.register("otb99_lang")
def load_otb99_lang(root: Path) -> Benchmark:
    return load_otb_like(root, "otb99_lang")
