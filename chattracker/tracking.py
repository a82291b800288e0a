"""Run one tracker over a frame source and keep what happened per frame (the CLI's main loop)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from tqdm import tqdm

from chattracker.types import Box, Frame, Tracker, TrackResult


@dataclass
class FrameRecord:
    """One frame's outcome; ``box`` is None when the tracker reported the target absent."""

    index: int
    box: Box | None
    score: float | None
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "frame": self.index + 1,
            "box": self.box.to_list() if self.box is not None else None,
            "score": self.score,
            "time": self.seconds,
        }


FrameCallback = Callable[[Frame, FrameRecord], None]


def starts_from_language(tracker: Tracker) -> bool:
    """Whether the tracker finds frame 1's box from a sentence itself (``initialize(frame, None, text)``
    then ``initial_box``), as JointNLT and UVLTrack do in their natural-language mode."""
    return bool(getattr(tracker, "starts_from_language", False))


def run_tracker(tracker: Tracker, frames: Iterable[Frame], init_box: Box | None, text: str | None = None,
                max_frames: int | None = None, total: int | None = None, on_frame: FrameCallback | None = None,
                progress: bool = True) -> list[FrameRecord]:
    """Initialise on the first frame with ``init_box`` and track the rest; frame 1's record is the init box.

    ``init_box`` None: a tracker that ``starts_from_language`` finds it from ``text`` and reports it."""
    if init_box is None and not (starts_from_language(tracker) and text):
        raise ValueError("run_tracker needs an initial box, or a sentence for a tracker that starts from language")
    records: list[FrameRecord] = []
    limit = max_frames if max_frames is not None else total
    bar = tqdm(total=limit, unit="frame", desc=getattr(tracker, "name", "tracking"), disable=not progress, leave=False)
    try:
        for index, frame in enumerate(frames):
            if max_frames is not None and index >= max_frames:
                break
            start = time.perf_counter()
            if index == 0:
                tracker.initialize(frame, init_box, text)
                if init_box is None:
                    init_box = Box.from_any(tracker.initial_box)  # type: ignore[attr-defined]
                result = TrackResult(init_box, None, {})
            else:
                result = tracker.track(frame)
            record = FrameRecord(index, result.box, result.score, time.perf_counter() - start, result.info)
            records.append(record)
            if on_frame is not None:
                on_frame(frame, record)
            bar.update(1)
    finally:
        bar.close()
    return records
