"""Adapters for OpenCV's trackers (weight-free MIL/KCF/CSRT here; NanoTrack in nanotrack.py).

OpenCV works on BGR images and integer rectangles; the conversion happens here, at the edge.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from chattracker.types import Box, Frame, TrackResult
from chattracker_trackers.base import register_tracker


def to_cv_rect(box: Box) -> tuple[int, int, int, int]:
    """Round a float box to the integer rectangle OpenCV trackers take (at least 1x1)."""
    x, y = int(round(box.x)), int(round(box.y))
    return (x, y, max(1, int(round(box.w))), max(1, int(round(box.h))))


class OpenCVTracker:
    """Wraps any ``cv2.Tracker``; ``score`` is the tracker's own confidence when OpenCV exposes one,
    else the update's success flag (1.0 / 0.0). On failure the last box is kept and flagged lost."""

    # Whether ``score`` grades how sure the tracker is (NanoTrack's classification score), or only
    # says that the update succeeded (a flag): a wrapper may read a high graded score as evidence.
    score_is_confidence = False

    def __init__(self, name: str, create: Callable[[], "cv2.Tracker"]) -> None:
        self.name = name
        self._create = create
        self._tracker: cv2.Tracker | None = None
        self._last: Box | None = None

    def initialize(self, frame: Frame, box: Box, text: str | None = None) -> None:
        self._tracker = self._create()
        self._tracker.init(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR), to_cv_rect(box))
        self._last = box

    def track(self, frame: Frame) -> TrackResult:
        if self._tracker is None:
            raise RuntimeError(f"{self.name}: track() called before initialize()")
        ok, rect = self._tracker.update(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
        score = self._score(bool(ok))
        if ok:
            self._last = Box(*(float(v) for v in rect))
        return TrackResult(self._last, score, {"lost": not ok})

    def _score(self, ok: bool) -> float:
        return 1.0 if ok else 0.0


@register_tracker("mil")
def build_mil() -> OpenCVTracker:
    """Multiple Instance Learning tracker (OpenCV main module, no weights)."""
    return OpenCVTracker("mil", cv2.TrackerMIL_create)


@register_tracker("kcf")
def build_kcf() -> OpenCVTracker:
    """Kernelized Correlation Filter (opencv-contrib, no weights)."""
    return OpenCVTracker("kcf", cv2.TrackerKCF_create)


@register_tracker("csrt")
def build_csrt() -> OpenCVTracker:
    """Discriminative correlation filter with channel and spatial reliability (opencv-contrib)."""
    return OpenCVTracker("csrt", cv2.TrackerCSRT_create)
