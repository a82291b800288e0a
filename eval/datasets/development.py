"""The fusion module's development set: the 11 ``sot_dev`` sequences, the four older real clips and,
where built, the 11 ``sot_dev_extra`` sequences (26 in all).

``root`` is the shared data folder (``../shared/data``). ``sot_dev_extra`` is too large for the shared
folder and is built on each machine (its README says how); it is found through ``extra`` or the
``CHATTRACKER_SOT_DEV_EXTRA`` variable, and a run without it says so. Anything fitted on this set is
judged by cross-validation by sequence (``bench/fusion.py --folds``). The old name-order halves remain
only for the calibration of the int8 OSNet (``bench/quantize_osnet.py``), which must stay reproducible.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from chattracker.errors import InputError
from chattracker_eval.datasets.base import DATASETS, Benchmark, SequenceList, load_dataset

logger = logging.getLogger(__name__)
ENV_EXTRA = "CHATTRACKER_SOT_DEV_EXTRA"
EXTRA_COUNT = 11

# (dataset loader, folder under root, sequence name in that loader)
CLIPS = (
    ("otb", "otb_crossing", "Crossing"),
    ("otb99_lang", "otb_woman_lang", "Woman"),
    ("vot", "vot15_bag", "bag"),
    ("lasot", "lasot_airplane-1_clip600", "airplane-1"),
)


def split_halves(names: list[str]) -> dict[str, list[str]]:
    """``tune`` (even positions of the sorted names) and ``held_out`` (odd positions)."""
    ordered = sorted(names)
    return {"tune": ordered[0::2], "held_out": ordered[1::2]}


@DATASETS.register("fusion_dev")
def load_development(root: Path, half: str = "all", extra: str | os.PathLike[str] | None = None) -> Benchmark:
    """The development sequences; ``extra``: the built ``sot_dev_extra`` folder ("none": leave it out
    on purpose; default: ``$CHATTRACKER_SOT_DEV_EXTRA``, else left out with a warning)."""
    root = Path(root)
    if not (root / "sot_dev").is_dir():
        raise InputError(f"{root}: no sot_dev/ folder (fusion_dev reads the shared data folder)")
    sequences = list(load_dataset("folder", root / "sot_dev").sequences)
    for loader, folder, name in CLIPS:
        sequences.append(load_dataset(loader, root / folder).sequences[name])
    extra = extra if extra is not None else os.environ.get(ENV_EXTRA)
    if extra is None:
        logger.warning("fusion_dev: %s is not set, so the 11 sot_dev_extra sequences are left out (15 of 26; "
                       "build them with ../shared/data/sot_dev_extra/build.sh)", ENV_EXTRA)
    elif str(extra) != "none":
        folder = Path(extra)
        if not folder.is_dir():
            raise InputError(f"{folder}: sot_dev_extra folder does not exist (set {ENV_EXTRA} to the folder "
                             f"build.sh wrote, or 'none' to leave it out)")
        found = list(load_dataset("folder", folder).sequences)
        if len(found) != EXTRA_COUNT:
            raise InputError(f"{folder}: expected the {EXTRA_COUNT} sot_dev_extra sequences, found {len(found)} "
                             f"(rerun its build.sh and verify.py)")
        sequences.extend(found)
    sequences.sort(key=lambda s: s.name)
    if half != "all":
        halves = split_halves([s.name for s in sequences])
        if half not in halves:
            raise InputError(f"fusion_dev: half must be all, tune or held_out, got {half!r}")
        sequences = [s for s in sequences if s.name in halves[half]]
    return Benchmark("fusion_dev", SequenceList(sequences), {}, f"fusion_dev {root}")
