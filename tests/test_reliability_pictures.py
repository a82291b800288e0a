"""Issue 36, case 16: what users see. The annotated video's label says each description once and keeps
long text inside the frame; a language start's start.png is drawn at the frame's own size."""

from __future__ import annotations

import cv2
import numpy as np

from chattracker.cli import main
from chattracker.video import LABEL_SCALE, annotate, fit_text

LONG_BACKGROUND = "bg: " + ". ".join(["parked car", "traffic light", "person in red", "bicycle", "bus stop sign",
                                      "street lamp", "dog on a leash", "shopping bag"] * 2)


def text_width(line: str) -> int:
    return cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE, 1)[0][0]


def test_long_text_is_wrapped_then_cut_to_the_width():
    rows = fit_text(LONG_BACKGROUND, 340)
    assert len(rows) == 2 and rows[1].endswith("...") and all(text_width(r) <= 340 for r in rows)
    assert rows[0].startswith("bg: parked car. traffic light")
    assert fit_text("short", 340) == ["short"]
    assert all(text_width(r) <= 40 for r in fit_text("incomprehensibilities", 40))  # one word wider than the frame


def test_label_shows_each_description_once_and_stays_inside_the_frame():
    frame = np.zeros((240, 360, 3), np.uint8)
    lines = ["fg: person in green"] * 3 + [LONG_BACKGROUND]
    canvas = annotate(frame, 0, None, 0.9, lines)
    alone = annotate(frame, 0, None, 0.9, ["fg: person in green", LONG_BACKGROUND])
    np.testing.assert_array_equal(canvas, alone)  # the repeats add nothing
    banded_rows = np.where((canvas[:, :, :] > 0).any(axis=(1, 2)))[0]
    assert banded_rows.max() < 100  # status, fg and two bg rows: four rows of 16 px, no more
    assert not canvas[:70, -2:].any()  # nothing reaches the right edge


def test_start_png_is_drawn_at_the_frame_size(shared_data, tmp_path):
    frames = shared_data / "otb_crossing/Crossing/img"
    height, width = cv2.imread(str(frames / "0001.jpg")).shape[:2]
    out = tmp_path / "run"
    assert main(["track", str(frames), "--text", "man in black walking across the road", "--tracker", "kcf",
                 "--max-frames", "3", "--no-video", "--no-progress", "--out", str(out)]) == 0
    assert cv2.imread(str(out / "start.png")).shape[:2] == (height, width)
