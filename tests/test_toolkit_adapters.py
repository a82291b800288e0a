"""Our trackers handed to other frameworks: the pytracking/OSTrack tracker object and got10k's Tracker
give, frame by frame, what the tracker gives when ChatTracker runs it itself."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from chattracker.builder import build_tracker_from_spec
from chattracker.toolkits.pytracking import PytrackingTracker
from chattracker.types import Box, TrackResult
from chattracker.video import list_images
from chattracker_trackers.pytracking import PytrackingAdapter
from tests.conftest import REPO_ROOT
from tests.helpers import real_sequences

FRAMES = 30


@pytest.fixture(scope="module")
def crossing(shared_data):
    sequence = real_sequences(shared_data)["Crossing"]
    files = list_images(sequence.frames)[:FRAMES]
    return files, Box.from_any(sequence.ground_truth[0])


def direct(tracker, frames, first: Box) -> np.ndarray:
    tracker.initialize(frames[0], first, None)
    return np.array([first.to_list()] + [tracker.track(frame).box.to_list() for frame in frames[1:]])


def pytracking_loop(tracker, frames, first: Box) -> np.ndarray:
    """What pytracking's and OSTrack's ``run_sequence`` do with a tracker object."""
    out = tracker.initialize(frames[0], {"init_bbox": first.to_list()}) or {}
    assert isinstance(out, dict)
    boxes = [first.to_list()]
    for frame in frames[1:]:
        boxes.append(tracker.track(frame, {})["target_bbox"])
    return np.array(boxes)


def test_pytracking_object_matches_the_tracker_it_wraps(crossing):
    files, first = crossing
    frames = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    expected = direct(build_tracker_from_spec("csrt"), frames, first)
    np.testing.assert_array_equal(pytracking_loop(PytrackingTracker("csrt"), frames, first), expected)
    # built as pytracking builds trackers: tracker_class(params) with the choice in a parameter object
    from_params = PytrackingTracker(SimpleNamespace(tracker="csrt"), "otb")
    np.testing.assert_array_equal(pytracking_loop(from_params, frames, first), expected)
    # and back in through our own adapter for pytracking-style objects: still the same boxes
    round_trip = PytrackingAdapter(PytrackingTracker("csrt"))
    np.testing.assert_array_equal(direct(round_trip, frames, first), expected)


def test_pytracking_object_wraps_the_chattracker_wrapper(crossing, weights_env, tmp_path, monkeypatch):
    monkeypatch.setenv("CHATTRACKER_CACHE", str(tmp_path / "cache"))
    files, first = crossing
    frames = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    config = str(REPO_ROOT / "configs" / "chattracker.yaml")
    expected = direct(build_tracker_from_spec(config), frames, first)
    wrapped = PytrackingTracker(config)
    assert wrapped.tracker.name.startswith("chattracker")
    np.testing.assert_array_equal(pytracking_loop(wrapped, frames, first), expected)


def test_got10k_tracker_matches_the_tracker_it_wraps(crossing):
    pytest.importorskip("got10k")
    from chattracker.toolkits.got10k import Got10kTracker

    files, first = crossing
    frames = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    expected = direct(build_tracker_from_spec("csrt"), frames, first)
    boxes, times = Got10kTracker("csrt").track([str(f) for f in files], np.array(first.to_list()))
    np.testing.assert_array_equal(boxes, expected)
    assert len(times) == FRAMES


class Vanishing:
    """Reports the target absent from frame 3 on (as the ChatTracker wrapper may)."""

    name = "vanishing"

    def initialize(self, frame, box, text=None):
        self.count = 0

    def track(self, frame):
        self.count += 1
        return TrackResult(Box(5, 6, 7, 8) if self.count < 2 else None, 0.5)


def test_absent_target_keeps_the_last_box_and_says_so():
    frame = np.zeros((20, 20, 3), np.uint8)
    tracker = PytrackingTracker(Vanishing())
    tracker.initialize(frame, {"init_bbox": [1, 2, 3, 4], "init_text": "a red car"})
    outputs = [tracker.track(frame) for _ in range(3)]
    assert [o["target_bbox"] for o in outputs] == [[5, 6, 7, 8]] * 3
    assert [o["target_absent"] for o in outputs] == [False, True, True]
    assert outputs[0]["score"] == 0.5
    with pytest.raises(TypeError):
        PytrackingTracker(SimpleNamespace(other=1))
