"""Numpy values where the Python API takes boxes, scores or frames, and the traces and caches they end in.

Protects the conversion at the edges (``Box``, the describers, the RPO trace and cache): a Python user's natural
``ChatTracker.initialize(frame, Box(*np.loadtxt(path)[0]))`` once crashed with ``TypeError: Object of type bool is
not JSON serializable`` when the RPO result was cached, because numpy values flowed into the trace.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from chattracker.types import Box, TrackResult
from chattracker.wrapper import ChatTracker
from tests.test_rpo_fakes import SCENE, ScriptedChat, ScriptedDescriber, WordGrounder, image


class _Still:
    """A base tracker that keeps its first box, with a numpy score (as onnxruntime-based trackers return)."""

    name = "still"

    def initialize(self, frame, box, text=None):
        self.box = Box.from_any(box)

    def track(self, frame):
        return TrackResult(self.box, np.float32(0.9))


@pytest.fixture
def gt_file(tmp_path):
    path = tmp_path / "groundtruth.txt"
    path.write_text("100,100,40,80\n104,101,40,80\n")
    return path


def _tracker(tmp_path, describer):
    return ChatTracker(_Still(), describer=describer, grounder=WordGrounder(SCENE), cache_dir=str(tmp_path / "cache"),
                       ground_every=1, rpo={"iterations": 1})


def test_initialize_with_a_loadtxt_box_caches_and_reuses_the_rpo_result(tmp_path, gt_file):
    rows = np.loadtxt(gt_file, delimiter=",")
    first = _tracker(tmp_path, ScriptedDescriber(["red person"]))
    first.initialize(image(), Box(*rows[0]))
    assert first.descriptions[0].foreground == "red person"
    [cached] = (tmp_path / "cache").glob("*.json")
    assert json.loads(cached.read_text())["result"]["description"]["foreground"] == "red person"
    again = _tracker(tmp_path, ScriptedDescriber([]))  # would raise if asked: the cached result is used
    again.initialize(image(), Box(*rows[0].astype(np.float32)))
    assert again.descriptions[0].foreground == "red person"
    again.set_ground_truth(rows)
    result = again.track(image())
    assert result.box is not None and all(type(v) is float for v in result.box.to_list())




def test_chat_describer_takes_numpy_boxes_and_frame_views():
    """Protects ChatDescriber.describe's conversion: a numpy box (array, or a tuple of numpy scalars) and a
    non-contiguous frame (an RGB view of a BGR frame) give the same prompt and image as plain values."""
    frame = image()
    bgr = np.ascontiguousarray(frame[..., ::-1])
    plain = ScriptedChat(['{"foreground": "red person", "background": ["car"]}'])
    expected = plain.describe(frame, Box(100, 100, 40, 80))
    for box, shown in ((np.array([100.0, 100.0, 40.0, 80.0]), frame),
                       (tuple(np.float32(v) for v in (100, 100, 40, 80)), bgr[..., ::-1])):
        describer = ScriptedChat(['{"foreground": "red person", "background": ["car"]}'])
        assert describer.describe(shown, box) == expected
        assert np.array_equal(describer.images[0], plain.images[0])
        assert describer.last_exchanges[0]["prompt"] == plain.last_exchanges[0]["prompt"]
        json.dumps(describer.last_exchanges)


@pytest.mark.shared
def test_yolox_grounder_and_attributes_describer_take_numpy_inputs(weights_env, shared_data):
    """The real grounder and the weight-free describer with a numpy box and a non-contiguous RGB view."""
    from chattracker.grounding.yolox import YoloxGrounder
    from chattracker.mllm.attributes import AttributesDescriber

    folder = shared_data / "otb_crossing" / "Crossing"
    bgr = cv2.imread(str(folder / "img" / "0001.jpg"))
    view, frame = bgr[..., ::-1], np.ascontiguousarray(bgr[..., ::-1])
    row = np.loadtxt(folder / "groundtruth_rect.txt")[0]  # tab-separated
    grounder = YoloxGrounder()
    found, expected = grounder.ground(view, ["person"]), grounder.ground(frame, ["person"])
    assert np.array_equal(found.boxes, expected.boxes) and np.array_equal(found.scores, expected.scores)
    describer = AttributesDescriber(grounder=grounder)
    assert describer.describe(view, row) == describer.describe(frame, Box(*row.tolist()))


def test_wrapper_initialize_takes_a_numpy_array_box(tmp_path, gt_file):
    tracker = _tracker(tmp_path, ScriptedDescriber(["red person"]))
    tracker.initialize(image(), np.loadtxt(gt_file, delimiter=",")[0])
    assert tracker.track(image()).box is not None


def test_wrapper_results_are_json_ready_with_a_numpy_base_score(tmp_path, gt_file):
    tracker = _tracker(tmp_path, ScriptedDescriber(["red person"]))
    tracker.initialize(image(), Box(*np.loadtxt(gt_file, delimiter=",")[0]))
    for _ in range(3):
        result = tracker.track(image())
        json.dumps({"score": result.score, "info": result.info})
