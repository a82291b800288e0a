"""The fusion module's development set: the 11 ``sot_dev`` sequences and the four older real clips.

``root`` is the shared data folder (``../shared/data``). Fifteen sequences, with the split used for
choosing thresholds fixed by name order before any result was seen (even positions tune, odd
positions are held out), so a report can show how far the choices generalise.
"""

from __future__ import annotations

from pathlib import Path

from chattracker.errors import InputError
from chattracker_eval.datasets.base import DATASETS, Benchmark, SequenceList, load_dataset

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
def load_development(root: Path, half: str = "all") -> Benchmark:
    root = Path(root)
    if not (root / "sot_dev").is_dir():
        raise InputError(f"{root}: no sot_dev/ folder (fusion_dev reads the shared data folder)")
    sequences = list(load_dataset("folder", root / "sot_dev").sequences)
    for loader, folder, name in CLIPS:
        sequences.append(load_dataset(loader, root / folder).sequences[name])
    sequences.sort(key=lambda s: s.name)
    if half != "all":
        halves = split_halves([s.name for s in sequences])
        if half not in halves:
            raise InputError(f"fusion_dev: half must be all, tune or held_out, got {half!r}")
        sequences = [s for s in sequences if s.name in halves[half]]
    return Benchmark("fusion_dev", SequenceList(sequences), {}, f"fusion_dev {root}")
