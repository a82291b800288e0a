"""Adapters for OpenCV's trackers (weight-free MIL/KCF/CSRT here; NanoTrack in nanotrack.py).

OpenCV works on BGR images and integer rectangles; the conversion happens here, at the edge. OpenCV
asserts (or, for MIL, loops forever) on boxes it cannot handle, so each tracker's real limits are
checked before it is called and any remaining ``cv2.error`` becomes one ``InputError`` line.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from chattracker.errors import InputError
from chattracker.types import Box, Frame, TrackResult
from chattracker_trackers.base import register_tracker

# A check gets the integer box (x, y, w, h) and the frame (width, height) and returns what is wrong, or None.
InputCheck = Callable[[tuple[int, int, int, int], tuple[int, int]], "str | None"]

# OpenCV's Haar features (tracking_feature.cpp): 2- or 4-part rectangles of type (rows, cols) parts
# that must fit strictly inside the box and cover at least 9 pixels; feature generation retries
# until one fits, so a box where none can fit never returns.
_HAAR_PARTS = ((2, 1), (1, 2), (4, 1), (1, 4), (2, 2))
_HAAR_MIN_AREA = 9


def to_cv_rect(box: Box) -> tuple[int, int, int, int]:
    """Round a float box to the integer rectangle OpenCV trackers take (at least 1x1)."""
    x, y = int(round(box.x)), int(round(box.y))
    return (x, y, max(1, int(round(box.w))), max(1, int(round(box.h))))


def haar_feature_fits(width: int, height: int) -> bool:
    """Whether at least one of MIL's Haar feature types fits a ``width x height`` box."""
    for rows, cols in _HAAR_PARTS:
        part_h, part_w = (height - 1) // rows, (width - 1) // cols
        if part_h >= 1 and part_w >= 1 and part_h * rows * part_w * cols >= _HAAR_MIN_AREA:
            return True
    return False


def check_mil(rect: tuple[int, int, int, int], frame_size: tuple[int, int]) -> str | None:
    """MIL's limits: a Haar feature must fit the box, and its samplers need the box to move inside the frame
    (positives within 3 px of the box, negatives at least 4.5 px away, on the integral image)."""
    x, y, w, h = rect
    width, height = frame_size
    if not haar_feature_fits(w, h):
        return (f"box {w}x{h} px is too small for MIL's Haar features (needs e.g. 5x5, 3x6 or 2x20 px); "
                "use a larger box or another tracker (kcf, csrt, nanotrack_v2)")
    cols, rows = width - w - 1, height - h - 1  # top-left positions the samplers may use
    if cols < 0 or rows < 0:
        return f"box {w}x{h} px leaves no room to move in the {width}x{height} frame (MIL needs it 1 px smaller)"
    far = max((x - c) ** 2 + (y - r) ** 2 for c in (0, cols) for r in (0, rows))
    if far < 21:
        return f"box {w}x{h} px nearly fills the {width}x{height} frame: MIL finds no background samples"
    return None


def check_csrt(rect: tuple[int, int, int, int], frame_size: tuple[int, int]) -> str | None:
    """CSRT resizes its template by the box's aspect: a 1-px side has no area to resize."""
    _, _, w, h = rect
    if w < 2 or h < 2:
        return f"box {w}x{h} px is too small for CSRT (needs at least 2x2 px)"
    return None


class OpenCVTracker:
    """Wraps any ``cv2.Tracker``; ``score`` is the tracker's own confidence when OpenCV exposes one,
    else the update's success flag (1.0 / 0.0). On failure the last box is kept and flagged lost."""

    # Whether ``score`` grades how sure the tracker is (NanoTrack's classification score), or only
    # says that the update succeeded (a flag): a wrapper may read a high graded score as evidence.
    score_is_confidence = False

    def __init__(self, name: str, create: Callable[[], "cv2.Tracker"], check: InputCheck | None = None) -> None:
        self.name = name
        self._create = create
        self._check = check
        self._tracker: cv2.Tracker | None = None
        self._last: Box | None = None

    def initialize(self, frame: Frame, box: Box, text: str | None = None) -> None:
        height, width = frame.shape[:2]
        rect = to_cv_rect(box)
        problem = self._check(rect, (width, height)) if self._check is not None else None
        if problem:
            raise InputError(f"{self.name}: {problem}")
        self._tracker = self._opencv("start", self._create)
        image = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)
        self._opencv(f"start on box {list(rect)} in the {width}x{height} frame", lambda: self._tracker.init(image, rect))
        self._last = box

    def track(self, frame: Frame) -> TrackResult:
        if self._tracker is None:
            raise RuntimeError(f"{self.name}: track() called before initialize()")
        image = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)
        ok, rect = self._opencv(f"track a {frame.shape[1]}x{frame.shape[0]} frame", lambda: self._tracker.update(image))
        score = self._score(bool(ok))
        if ok:
            self._last = Box(*(float(v) for v in rect))
        return TrackResult(self._last, score, {"lost": not ok})

    def _opencv(self, what: str, call: Callable):
        """Run one OpenCV call; its assertion becomes one line naming this tracker and what it was doing."""
        try:
            return call()
        except cv2.error as error:
            raise InputError(f"{self.name} cannot {what}: {self._explain(error)}") from None

    def _explain(self, error: cv2.error) -> str:
        lines = [line for line in str(error).strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else "OpenCV error"

    def _score(self, ok: bool) -> float:
        return 1.0 if ok else 0.0


@register_tracker("mil")
def build_mil() -> OpenCVTracker:
    """Multiple Instance Learning tracker (OpenCV main module, no weights)."""
    return OpenCVTracker("mil", cv2.TrackerMIL_create, check_mil)


@register_tracker("kcf")
def build_kcf() -> OpenCVTracker:
    """Kernelized Correlation Filter (opencv-contrib, no weights)."""
    return OpenCVTracker("kcf", cv2.TrackerKCF_create)


@register_tracker("csrt")
def build_csrt() -> OpenCVTracker:
    """Discriminative correlation filter with channel and spatial reliability (opencv-contrib)."""
    return OpenCVTracker("csrt", cv2.TrackerCSRT_create, check_csrt)
