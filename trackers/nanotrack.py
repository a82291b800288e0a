"""NanoTrack through ``cv2.TrackerNano`` (two ONNX files: backbone and neck/head), with its score."""

from __future__ import annotations

import os

import cv2

from chattracker.weights import resolve_weight
from chattracker_trackers.base import register_tracker
from chattracker_trackers.opencv import OpenCVTracker


class NanoTracker(OpenCVTracker):
    """NanoTrack v1/v2; ``score`` is ``getTrackingScore()`` (classification confidence, 0..1)."""

    score_is_confidence = True

    def __init__(self, version: str, backbone: str | os.PathLike[str] | None = None,
                 head: str | os.PathLike[str] | None = None) -> None:
        if version not in {"v1", "v2"}:
            raise ValueError(f"cv2.TrackerNano runs NanoTrack v1 or v2, not {version!r}")
        self.backbone = resolve_weight(f"nanotrack_{version}_backbone", backbone)
        self.head = resolve_weight(f"nanotrack_{version}_head", head)
        super().__init__(f"nanotrack_{version}", self._make)

    def _make(self) -> cv2.Tracker:
        params = cv2.TrackerNano_Params()
        params.backbone = str(self.backbone)
        params.neckhead = str(self.head)
        # OpenCV 5 warns on every create that its new graph engine ignores the target setting.
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            return cv2.TrackerNano_create(params)
        finally:
            cv2.utils.logging.setLogLevel(previous)

    def _explain(self, error: cv2.error) -> str:
        # Corrupt, swapped or other-version ONNX files fail inside OpenCV's graph code: name the files.
        return (f"the ONNX files (backbone {self.backbone}, head {self.head}) do not work with cv2.TrackerNano "
                f"(corrupt, swapped, or not NanoTrack {self.name[-2:]}): {super()._explain(error)}")

    def _score(self, ok: bool) -> float:
        return float(self._tracker.getTrackingScore())


@register_tracker("nanotrack_v1")
def build_nanotrack_v1(backbone: str | None = None, head: str | None = None) -> NanoTracker:
    return NanoTracker("v1", backbone, head)


@register_tracker("nanotrack_v2")
def build_nanotrack_v2(backbone: str | None = None, head: str | None = None) -> NanoTracker:
    return NanoTracker("v2", backbone, head)


@register_tracker("nanotrack")
def build_nanotrack(version: str = "v2", backbone: str | None = None, head: str | None = None) -> NanoTracker:
    return NanoTracker(version, backbone, head)
