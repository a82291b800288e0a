"""What every bridge needs: one of our trackers from a spec, frames as RGB arrays, a box per frame."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from chattracker.types import Box, Frame, Tracker


def folder_safe_name(text: str) -> str:
    """A tracker name fit for a folder name on every system (toolkits write results under it):
    ``chattracker:nanotrack_v2`` -> ``chattracker_nanotrack_v2`` (a colon is illegal on Windows and splits paths)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "tracker"


def resolve_tracker(tracker: Tracker | str, **overrides: Any) -> Tracker:
    """A tracker object as given, or built from a registered name / YAML config path."""
    if isinstance(tracker, str):
        from chattracker.builder import build_tracker_from_spec

        return build_tracker_from_spec(tracker, **overrides)
    if not isinstance(tracker, Tracker):
        raise TypeError(f"expected a ChatTracker tracker or a tracker spec, got {type(tracker).__name__}")
    return tracker


def as_frame(image: Any) -> Frame:
    """PIL images and numpy arrays (gray, RGB, RGBA) as the HxWx3 uint8 RGB frames our trackers take."""
    if hasattr(image, "mode") and hasattr(image, "convert"):  # PIL, as got10k's Tracker.track reads frames
        image = image.convert("RGB") if image.mode != "RGB" else image
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.shape[2] == 4:
        array = array[:, :, :3]
    if array.dtype != np.uint8:
        raise TypeError(f"frames must be uint8 images, got {array.dtype}")
    return np.ascontiguousarray(array)


class HeldBox:
    """The last box a tracker gave, kept for frames where it reports the target absent: other
    frameworks expect a box on every frame (got10k's arrays, pytracking's result files)."""

    def __init__(self) -> None:
        self.box: Box | None = None

    def start(self, box: Box) -> Box:
        self.box = box
        return box

    def update(self, box: Box | None) -> tuple[Box, bool]:
        """The box to report and whether it was held (the tracker gave none, or an empty one)."""
        if box is not None and box.is_valid():
            self.box = box
            return box, False
        if self.box is None:
            raise RuntimeError("track() called before initialize()")
        return self.box, True
