"""Adapters on real frames: OpenCV weight-free trackers, NanoTrack, and the pytracking-style adapter."""

import cv2
import numpy as np
import pytest

from chattracker.errors import ConfigError
from chattracker.types import Box, Tracker
from chattracker.video import list_images, read_image
from chattracker_trackers.base import available_trackers, build_tracker
from chattracker_trackers.pytracking import PytrackingAdapter, build_pytracking
from tests.helpers import real_sequences, success_auc


class TemplateMatchTracker:
    """A small real pytracking-style tracker: normalised cross-correlation in a search window."""

    def initialize(self, image, info):
        x, y, w, h = (int(round(v)) for v in info["init_bbox"])
        self.box = [x, y, w, h]
        self.template = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[y:y + h, x:x + w]
        self.text = info.get("init_text")

    def track(self, image, info=None):
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        x, y, w, h = self.box
        x0, y0 = max(0, x - w), max(0, y - h)
        window = gray[y0:y0 + 3 * h, x0:x0 + 3 * w]
        scores = cv2.matchTemplate(window, self.template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (dx, dy) = cv2.minMaxLoc(scores)
        self.box = [x0 + dx, y0 + dy, w, h]
        return {"target_bbox": list(map(float, self.box)), "best_score": float(best)}


def build_template_tracker():
    return TemplateMatchTracker()


def _run(tracker: Tracker, files, truth, frames: int) -> np.ndarray:
    boxes = [truth[0]]
    for index, file in enumerate(files[:frames]):
        frame = read_image(file)
        if index == 0:
            tracker.initialize(frame, Box.from_any(truth[0]), "a man crossing the street")
        else:
            result = tracker.track(frame)
            assert result.box is not None
            boxes.append(result.box.to_list())
    return np.array(boxes)


@pytest.mark.parametrize("name", ["mil", "kcf", "csrt"])
def test_weight_free_opencv_trackers_follow_crossing(shared_data, name):
    sequence = real_sequences(shared_data)["Crossing"]
    files = list_images(sequence.frames)
    tracker = build_tracker(name)
    assert isinstance(tracker, Tracker) and tracker.name == name
    boxes = _run(tracker, files, sequence.ground_truth, 20)
    # On the first 20 frames of Crossing every one of them keeps the pedestrian.
    assert success_auc(boxes, sequence.ground_truth[:20]) > 0.45


def test_nanotrack_reports_its_score(shared_data, weights_env):
    sequence = real_sequences(shared_data)["Crossing"]
    tracker = build_tracker("nanotrack_v2")
    files = list_images(sequence.frames)
    tracker.initialize(read_image(files[0]), Box.from_any(sequence.ground_truth[0]))
    result = tracker.track(read_image(files[1]))
    assert 0.5 < result.score <= 1.0
    assert result.box.iou(Box.from_any(sequence.ground_truth[1])) > 0.6


def test_pytracking_style_object_plugs_in_unchanged(shared_data):
    sequence = real_sequences(shared_data)["Crossing"]
    files = list_images(sequence.frames)
    inner = TemplateMatchTracker()
    adapter = PytrackingAdapter(inner)
    boxes = _run(adapter, files, sequence.ground_truth, 30)
    assert inner.text == "a man crossing the street"  # language passed as info['init_text']
    assert success_auc(boxes, sequence.ground_truth[:30]) > 0.5
    result = adapter.track(read_image(files[30]))
    assert result.score is not None and -1.0 <= result.score <= 1.0


def test_pytracking_adapter_built_from_registry_by_import_path():
    adapter = build_tracker("pytracking", factory="tests.test_trackers:build_template_tracker", name="ncc")
    assert isinstance(adapter, PytrackingAdapter) and adapter.name == "ncc"
    with pytest.raises(ConfigError, match="cannot import"):
        build_pytracking("no_such_module_xyz:thing")
    with pytest.raises(ConfigError, match="not a pytracking-style tracker"):
        PytrackingAdapter(object())


def test_registry_lists_adapters_and_rejects_unknown():
    assert {"nanotrack_v1", "nanotrack_v2", "mil", "kcf", "csrt", "pytracking"} <= set(available_trackers())
    with pytest.raises(ConfigError, match="did you mean 'csrt'"):
        build_tracker("csrtt")
    with pytest.raises(ConfigError, match="bad parameters"):
        build_tracker("mil", speed=3)
