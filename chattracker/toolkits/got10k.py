"""Any of our trackers as a ``got10k.trackers.Tracker``, so ``ExperimentOTB``, ``ExperimentLaSOT``,
``ExperimentGOT10k`` ... run it as they run any tracker (``init(image, box)`` / ``update(image) -> box``).

Needs the ``got10k`` package (``pip install chattracker[got10k]``). got10k hands over PIL images and
``[x, y, w, h]`` arrays; frames where our tracker reports the target absent repeat the last box.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    from got10k.trackers import Tracker as _Got10kTracker
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError("chattracker.toolkits.got10k needs the got10k package: pip install got10k") from error

from chattracker.toolkits.common import HeldBox, as_frame, folder_safe_name, resolve_tracker
from chattracker.types import Box, Tracker


class Got10kTracker(_Got10kTracker):
    """``tracker`` is a tracker object (the ChatTracker wrapper included) or a name / YAML config.

    ``is_deterministic`` tells ``ExperimentGOT10k`` to run each sequence once instead of three times;
    say so only for trackers that are (OpenCV's, NanoTrack, the wrapper with weight-free backends).
    """

    def __init__(self, tracker: Tracker | str, name: str | None = None, is_deterministic: bool = False,
                 text: str | None = None, **overrides: Any) -> None:
        self.tracker = resolve_tracker(tracker, **overrides)
        super().__init__(name or folder_safe_name(f"ChatTracker_{self.tracker.name}"), is_deterministic)
        self.text = text
        self.held = HeldBox()
        self.held_frames = 0

    def init(self, image: Any, box: Any) -> None:
        start = self.held.start(Box.from_any(box))
        self.held_frames = 0
        self.tracker.initialize(as_frame(image), start, self.text)

    def update(self, image: Any) -> np.ndarray:
        box, held = self.held.update(self.tracker.track(as_frame(image)).box)
        self.held_frames += held
        return np.asarray(box.to_list(), dtype=np.float64)
