"""VOT-style sequences: ``<seq>/groundtruth.txt`` with 4-corner polygons (8 values) or boxes (4),
frames in ``color/``, ``imgs/`` or the folder itself. Polygons become the axis-aligned box of
their corners (min/max), the box OPE trackers are initialised with."""

from __future__ import annotations

from pathlib import Path

from chattracker_eval.datasets.base import DATASETS, Benchmark, SequenceList, read_list_file, report_missing
from chattracker_eval.datasets.folder import folder_sequence, read_ground_truth, sequence_folders


@DATASETS.register("vot")
def load_vot(root: Path) -> Benchmark:
    root = Path(root)
    folders = sequence_folders(root)
    if (root / "list.txt").is_file() and len(folders) > 1:
        # the toolkit's order is the list's
        found = {f.name: f for f in folders}
        listed = read_list_file(root / "list.txt")
        report_missing("vot", listed, set(found))
        folders = [found[name] for name in listed if name in found]
    sequences = SequenceList(
        folder_sequence(f, read_ground_truth(f / "groundtruth.txt"), "vot")
        for f in folders)
    return Benchmark("vot", sequences, {}, f"vot {root}")
