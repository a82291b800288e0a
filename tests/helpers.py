"""Small helpers for tests: loading the real sequences of ../shared/data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class RealSequence:
    name: str
    frames: Path
    ground_truth: np.ndarray  # (N, 4) x, y, w, h


def _load_boxes(path: Path) -> np.ndarray:
    rows = [line.replace(",", " ").replace("\t", " ").split() for line in path.read_text().splitlines() if line.strip()]
    return np.array(rows, dtype=float)


def real_sequences(data: Path) -> dict[str, RealSequence]:
    """The four real sequences; bag's polygons become axis-aligned boxes (min/max of the corners)."""
    polygons = _load_boxes(data / "vot15_bag/bag/groundtruth.txt")
    xs, ys = polygons[:, 0::2], polygons[:, 1::2]
    bag = np.stack([xs.min(1), ys.min(1), xs.max(1) - xs.min(1), ys.max(1) - ys.min(1)], axis=1)
    airplane = data / "lasot_airplane-1_clip600/airplane/airplane-1"
    return {
        "Crossing": RealSequence("Crossing", data / "otb_crossing/Crossing/img", _load_boxes(data / "otb_crossing/Crossing/groundtruth_rect.txt")),
        "Woman": RealSequence("Woman", data / "otb_woman_lang/Woman/img", _load_boxes(data / "otb_woman_lang/Woman/groundtruth_rect.txt")),
        "bag": RealSequence("bag", data / "vot15_bag/bag/imgs", bag),
        "airplane-1": RealSequence("airplane-1", airplane / "img", _load_boxes(airplane / "groundtruth.txt")),
    }


def success_auc(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean success over IoU thresholds 0, 0.05, ..., 1 (strict >), continuous edges; 0..1."""
    p, g = np.asarray(predicted, float), np.asarray(truth, float)
    x1, y1 = np.maximum(p[:, 0], g[:, 0]), np.maximum(p[:, 1], g[:, 1])
    x2 = np.minimum(p[:, 0] + p[:, 2], g[:, 0] + g[:, 2])
    y2 = np.minimum(p[:, 1] + p[:, 3], g[:, 1] + g[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    iou = inter / (p[:, 2] * p[:, 3] + g[:, 2] * g[:, 3] - inter)
    return float(np.mean([(iou > t).mean() for t in np.linspace(0, 1, 21)]))


def assert_one_error_line(capsys, code: int, *expected: str) -> str:
    """The CLI's contract for bad input: exit 2 and exactly one ``chattracker: error:`` line naming the cause."""
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("chattracker: error: "), err
    for part in expected:
        assert part in err, err
    return err


SOT_CLIPS = ("OTB_Couple", "OTB_Football1", "OTB_Skiing", "OTB_Deer", "OTB_Toy", "OTB_MotorRolling")


def make_sot_clips(data: Path, out: Path, length: int, names: tuple[str, ...] = SOT_CLIPS) -> Path:
    """A ``folder`` dataset of the first ``length`` real frames (symlinks) and boxes of sot_dev sequences."""
    for name in names:
        source = data / "sot_dev" / name
        folder = out / name / "img"
        folder.mkdir(parents=True)
        frames = sorted((source / "img").iterdir())[:length]
        for frame in frames:
            (folder / frame.name).symlink_to(frame)
        rows = (source / "groundtruth.txt").read_text().splitlines()[:len(frames)]
        (out / name / "groundtruth.txt").write_text("\n".join(rows) + "\n")
    return out
