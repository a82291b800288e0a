"""Sequence objects and the dataset registry shared by every benchmark loader.

A loader reads annotations eagerly (small) and frame paths lazily (listing a folder of thousands of
images only when a tracker needs them). Anything odd about a sequence is logged as a warning that
names it; a loader never drops or adds a sequence silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from chattracker.errors import InputError
from chattracker.registry import Registry
from chattracker.video import list_images

logger = logging.getLogger(__name__)

FrameLister = Callable[[], list[Path]]


@dataclass
class Sequence:
    """One video of a benchmark: ground truth ``(N, 4)`` x,y,w,h, absent flags ``(N,)``, language,
    attribute flags, and frame paths resolved on first use."""

    name: str
    ground_truth: np.ndarray
    absent: np.ndarray
    dataset: str
    language: str = ""
    attributes: dict[str, bool] = field(default_factory=dict)
    frame_lister: FrameLister | None = None
    _frames: list[Path] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.ground_truth = np.asarray(self.ground_truth, dtype=np.float64).reshape(-1, 4)
        self.absent = np.asarray(self.absent, dtype=bool).reshape(-1)

    def __len__(self) -> int:
        return len(self.ground_truth)

    @property
    def has_frames(self) -> bool:
        return self.frame_lister is not None

    @property
    def frames(self) -> list[Path]:
        """The frame paths of the ground-truth frames, in order (listed once, then cached)."""
        if self._frames is None:
            if self.frame_lister is None:
                raise InputError(f"sequence {self.name}: no images here (annotation-only layout); "
                                 "point --root at the dataset itself")
            files = self.frame_lister()
            if len(files) != len(self):
                logger.warning("sequence %s: %d image(s) but %d ground-truth line(s); using the first %d",
                               self.name, len(files), len(self), min(len(files), len(self)))
            self._frames = files[: len(self)]
        return self._frames

    @property
    def init_box(self) -> np.ndarray:
        return self.ground_truth[0]


class SequenceList(list):
    """Sequences in benchmark order, also indexable by name."""

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            for sequence in self:
                if sequence.name == key:
                    return sequence
            raise KeyError(key)
        return super().__getitem__(key)

    def names(self) -> list[str]:
        return [sequence.name for sequence in self]

    def select(self, names: Iterable[str] | None) -> "SequenceList":
        """The named sequences, in the order given; unknown names are an error listing them."""
        if not names:
            return self
        wanted = list(names)
        known = {sequence.name: sequence for sequence in self}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise InputError(f"unknown sequence(s): {', '.join(unknown[:10])}"
                             f"{' ...' if len(unknown) > 10 else ''} ({len(self)} available)")
        return SequenceList(known[name] for name in wanted)


@dataclass
class Benchmark:
    """A loaded benchmark: its sequences, attribute names (short -> long) and where it came from."""

    name: str
    sequences: SequenceList
    attribute_names: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def __iter__(self) -> Iterator[Sequence]:
        return iter(self.sequences)

    def __len__(self) -> int:
        return len(self.sequences)


DatasetLoader = Callable[..., Benchmark]
DATASETS: Registry[Benchmark] = Registry("dataset", builtin_modules=(
    "chattracker_eval.datasets.lasot", "chattracker_eval.datasets.tnl2k", "chattracker_eval.datasets.otb",
    "chattracker_eval.datasets.vot", "chattracker_eval.datasets.folder", "chattracker_eval.datasets.got10k",
    "chattracker_eval.datasets.trackingnet", "chattracker_eval.datasets.uav123", "chattracker_eval.datasets.development",
))


def load_dataset(name: str, root: str | Path, **options) -> Benchmark:
    """Load benchmark ``name`` from ``root`` (a dataset root or an official toolkit folder)."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root} does not exist")
    return DATASETS.build(name, root=root, **options)


def image_lister(folder: Path) -> FrameLister:
    """Natural-sorted image files of ``folder`` (image extensions only), listed when called."""

    def listing() -> list[Path]:
        if not folder.is_dir():
            raise InputError(f"frame folder {folder} does not exist")
        return list_images(folder)

    return listing


def read_list_file(path: Path) -> list[str]:
    """Sequence names, one per line (the LaSOT list has no trailing newline; CRLF tolerated)."""
    return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]


def check_absent_length(name: str, flags: np.ndarray, count: int) -> np.ndarray:
    """Absent flags cut or padded to the ground-truth length, with a warning when they disagree."""
    flags = np.asarray(flags).reshape(-1)
    if len(flags) != count:
        logger.warning("sequence %s: %d absent flag(s) for %d frame(s); %s to %d", name, len(flags), count,
                       "cut" if len(flags) > count else "padded with 'present'", count)
        fixed = np.zeros(count)
        fixed[: min(count, len(flags))] = flags[:count]
        flags = fixed
    return flags == 1


def warn_if_no_language(sequence_name: str, language: str, needed: bool) -> None:
    if needed and not language:
        logger.warning("sequence %s: empty language description", sequence_name)


def report_missing(benchmark: str, listed: list[str], found: set[str]) -> list[str]:
    """Names in the list file without annotations: warned about, then left out of the set."""
    missing = [name for name in listed if name not in found]
    if missing:
        logger.warning("%s: %d listed sequence(s) have no annotations here and are left out: %s", benchmark,
                       len(missing), ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    return missing
