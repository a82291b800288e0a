"""The ChatTracker wrapper on real frames: pytracking-style and weight-free bases, recovery from a
distractor takeover, the absence report (down to the CLI's JSON), settings validation."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from chattracker.builder import build_tracker_from_spec
from chattracker.cli import main as cli_main
from chattracker.errors import ConfigError
from chattracker.types import Box, Tracker, TrackResult
from chattracker.video import list_images, read_image
from chattracker.wrapper import ChatTracker, FusionConfig, build_chattracker
from chattracker_trackers.base import build_tracker
from chattracker_trackers.pytracking import PytrackingAdapter
from tests.helpers import real_sequences, success_auc
from tests.test_trackers import TemplateMatchTracker

# The other pedestrian of Crossing (YOLOX finds him at x 19 at frame 41 and x 11 at frame 51).
DISTRACTOR_AT_46 = Box(15.0, 55.0, 14.0, 32.0)


@pytest.fixture(scope="module")
def crossing(shared_data):
    sequence = real_sequences(shared_data)["Crossing"]
    files = list_images(sequence.frames)
    return [read_image(f) for f in files[:60]], sequence.ground_truth[:60]


@pytest.fixture(scope="module")
def grounder(weights_env):
    from chattracker.grounding.yolox import YoloxGrounder

    return YoloxGrounder()


def settings(tmp_path: Path, **extra) -> dict:
    return {"cache_dir": str(tmp_path / "rpo"), **extra}


def run(tracker: Tracker, frames, first: Box, text: str | None = None) -> list[TrackResult]:
    tracker.initialize(frames[0], first, text)
    return [TrackResult(first, None, {})] + [tracker.track(frame) for frame in frames[1:]]


def boxes_of(results: list[TrackResult]) -> np.ndarray:
    return np.array([r.box.to_list() for r in results])


def test_wraps_a_pytracking_style_tracker_and_catches_its_jump(crossing, grounder, tmp_path):
    frames, truth = crossing
    plain = run(PytrackingAdapter(TemplateMatchTracker()), frames[:40], Box.from_any(truth[0]))
    inner = TemplateMatchTracker()
    wrapped = build_chattracker(PytrackingAdapter(inner), settings(tmp_path))
    wrapped.grounder = grounder  # share the loaded ONNX session across tests
    assert isinstance(wrapped, Tracker) and wrapped.name == "chattracker:pytracking:TemplateMatchTracker"
    results = run(wrapped, frames[:40], Box.from_any(truth[0]), "a man crossing the street")
    # RPO ran on frame 1 (the text reached the base too) and produced a foreground phrase about a person.
    assert inner.text == "a man crossing the street"
    assert "person" in wrapped.descriptions[0].foreground or "man" in wrapped.descriptions[0].foreground
    grounded = [r for r in results[1:] if "grounding" in r.info]
    assert wrapped.grounding_rounds == len(grounded) >= 3  # every 10 frames at least
    # Grounding frames carry what the annotated video draws: proposals, the chosen box, the descriptions.
    first = grounded[0].info
    assert any(label == "chosen" for _, label, _ in first["overlays"])
    assert any(line.startswith("fg: ") for line in first["text_lines"])
    # The NCC tracker jumps off the pedestrian at frame 28 (IoU 0.16); the wrapper sees the jump,
    # grounds, and re-initialises it on the pedestrian. Before that its boxes are the base's own.
    first_event = wrapped.events[0]
    assert first_event["event"] == "reinitialize" and first_event["reason"].startswith("recovered (")
    index = first_event["frame"] - 1
    assert Box.from_any(plain[index].box.to_list()).iou(Box.from_any(truth[index])) < 0.3
    assert results[index].box.iou(Box.from_any(truth[index])) > 0.5
    np.testing.assert_allclose(boxes_of(results)[:index], boxes_of(plain)[:index])
    after = slice(index, index + 5)
    wrapped_iou = np.mean([r.box.iou(Box.from_any(t)) for r, t in zip(results[after], truth[after])])
    plain_iou = np.mean([r.box.iou(Box.from_any(t)) for r, t in zip(plain[after], truth[after])])
    assert wrapped_iou > plain_iou + 0.3
    assert success_auc(boxes_of(results), truth[:40]) > success_auc(boxes_of(plain), truth[:40])


def test_weight_free_base_from_a_yaml_config(crossing, weights_env, tmp_path):
    frames, truth = crossing
    config = tmp_path / "csrt_enhanced.yaml"
    config.write_text(f"tracker: csrt\nenhance: true\nchattracker:\n  cache_dir: {tmp_path / 'rpo'}\n"
                      f"  ground_every: 5\n  use_background: false\n")
    tracker = build_tracker_from_spec(str(config))
    assert isinstance(tracker, ChatTracker) and tracker.name == "chattracker:csrt"
    assert tracker.config.ground_every == 5 and not tracker.config.use_background
    results = run(tracker, frames[:30], Box.from_any(truth[0]))
    assert tracker.grounding_rounds >= 5
    assert success_auc(boxes_of(results), truth[:30]) > 0.45


class HijackedTracker:
    """A real CSRT tracker that a distractor takes over at one frame (it re-locks onto the other
    pedestrian), as happens when a look-alike passes close; after that it follows the distractor."""

    name = "hijacked-csrt"

    def __init__(self, at: int, distractor: Box) -> None:
        self.inner = build_tracker("csrt")
        self.at, self.distractor, self.index = at, distractor, 0

    def initialize(self, frame, box, text=None):
        self.inner.initialize(frame, box, text)

    def track(self, frame):
        self.index += 1
        if self.index == self.at:
            self.inner.initialize(frame, self.distractor)
            return TrackResult(self.distractor, 1.0, {})
        return self.inner.track(frame)


def test_recovers_from_a_distractor_takeover_and_redescribes(crossing, grounder, tmp_path):
    frames, truth = crossing
    first = Box.from_any(truth[0])
    plain = run(HijackedTracker(45, DISTRACTOR_AT_46), frames, first)
    assert Box.from_any(plain[-1].box.to_list()).iou(Box.from_any(truth[-1])) == 0.0  # lost for good
    wrapped = ChatTracker(HijackedTracker(45, DISTRACTOR_AT_46), describer=None, grounder=grounder,
                          config=FusionConfig.from_dict(settings(tmp_path, foreground="person in black on the right",
                                                                 background="car", redescribe=True,
                                                                 redescribe_gap=0, describer="attributes")))
    from chattracker.mllm.attributes import AttributesDescriber

    wrapped.describer = AttributesDescriber(grounder=grounder)
    results = run(wrapped, frames, first)
    events = [e for e in wrapped.events if e["event"] == "reinitialize"]
    assert events and 46 <= events[0]["frame"] <= 50, wrapped.events
    assert events[0]["reason"].startswith("recovered (")
    ious = [r.box.iou(Box.from_any(t)) for r, t in zip(results, truth)]
    assert min(ious[events[0]["frame"]:]) > 0.3 and np.mean(ious[events[0]["frame"]:]) > 0.5
    # Re-description after the recovery keeps both descriptions.
    assert len(wrapped.descriptions) == 2 and wrapped.descriptions[0].foreground == "person in black on the right"


@pytest.mark.xfail(strict=True, reason="issue 35 redesign: the learned path reports the target absent only "
                   "when the base reports no box; an absent decision from the scores is not built yet (measured: "
                   "0 of the 12 hidden frames reported absent)")
def test_absence_is_reported_and_reaches_the_cli_json(crossing, weights_env, tmp_path):
    frames, truth = crossing
    folder = tmp_path / "frames"
    folder.mkdir()
    x, y, w, h = (int(v) for v in truth[0])
    for index, frame in enumerate(frames[:24]):
        image = frame.copy()
        if index >= 12:
            # From frame 13 on the pedestrian is hidden behind a grey board.
            x0, y0 = int(truth[index][0]) - 25, int(truth[index][1]) - 20
            image[max(0, y0):y0 + h + 40, max(0, x0):x0 + w + 50] = 128
        cv2.imwrite(str(folder / f"{index + 1:04d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    config = tmp_path / "enhanced.yaml"
    config.write_text("tracker: pytracking\n"
                      "params: {factory: 'tests.test_trackers:build_template_tracker', name: ncc}\n"
                      f"enhance: true\nchattracker: {{cache_dir: '{tmp_path / 'rpo'}', ground_every: 4}}\n")
    out = tmp_path / "out"
    code = cli_main(["track", str(folder), "--box", f"{x},{y},{w},{h}", "--config", str(config), "--out", str(out),
                     "--no-progress", "--no-video"])
    assert code == 0
    frames_json = json.loads((out / "track.json").read_text())["frames"]
    boxes = [f["box"] for f in frames_json]
    assert all(b is not None for b in boxes[:12])  # visible: always a box
    assert sum(b is None for b in boxes[12:]) >= 10  # hidden: absence reported, box null
    assert any(f["score"] is not None and f["score"] <= 0.25 for f, b in zip(frames_json, boxes) if b is None)
    rows = (out / "boxes.txt").read_text().splitlines()
    assert len(rows) == 24 and any("nan" in row for row in rows[12:])


def test_settings_are_validated_with_the_allowed_keys(weights_env):
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) ground_evry; allowed: .*ground_every"):
        build_chattracker(build_tracker("csrt"), {"ground_evry": 3})
    with pytest.raises(ConfigError, match="ground_every must be an integer"):
        build_chattracker(build_tracker("csrt"), {"ground_every": "often"})
    with pytest.raises(ConfigError, match="region must be one of search, frame"):
        build_chattracker(build_tracker("csrt"), {"region": "everywhere"})
    with pytest.raises(ConfigError, match="selection must be one of"):
        build_chattracker(build_tracker("csrt"), {"selection": "best"})
    with pytest.raises(ConfigError, match=r"rpo: unknown setting\(s\) iters"):
        build_chattracker(build_tracker("csrt"), {"rpo": {"iters": 2}})
    with pytest.raises(ConfigError, match="unknown grounder"):
        build_chattracker(build_tracker("csrt"), {"grounder": "nope"})
    with pytest.raises(ConfigError, match=r"switch_cost must be in \[0, inf\)"):
        build_chattracker(build_tracker("csrt"), {"switch_cost": -1.0})
    with pytest.raises(ConfigError, match="decay must be a finite number"):
        build_chattracker(build_tracker("csrt"), {"decay": float("nan")})


def test_cli_enhance_writes_the_annotated_video_with_descriptions(shared_data, weights_env, tmp_path, monkeypatch):
    monkeypatch.setenv("CHATTRACKER_CACHE", str(tmp_path / "cache"))  # RPO cache goes here, not the user's
    sequence = real_sequences(shared_data)["Crossing"]
    x, y, w, h = sequence.ground_truth[0]
    out = tmp_path / "out"
    code = cli_main(["track", str(sequence.frames), "--box", f"{x},{y},{w},{h}", "--tracker", "csrt", "--enhance",
                     "--text", "a man crossing the street", "--max-frames", "15", "--out", str(out), "--no-progress"])
    assert code == 0
    report = json.loads((out / "track.json").read_text())
    assert report["tracker"] == "chattracker:csrt" and len(report["frames"]) == 15
    assert list((tmp_path / "cache" / "rpo").glob("*.json"))  # RPO ran once and was cached
    video = cv2.VideoCapture(str(out / "annotated.mp4"))
    count = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    video.release()
    assert count == 15


def test_nanotrack_template_refreshed_when_the_airplane_grows(shared_data, weights_env, grounder, tmp_path):
    """LaSOT airplane-1: the landing airplane grows ~5x in area over the clip; NanoTrack's frame-1
    template stops fitting and it drifts off near the end. The wrapper replaces the template with
    grounding-confirmed boxes at the new scale and keeps the airplane."""
    sequence = real_sequences(shared_data)["airplane-1"]
    files, truth = list_images(sequence.frames)[:600], sequence.ground_truth[:600]
    first = Box.from_any(truth[0])
    text = (shared_data / "lasot_airplane-1_clip600/airplane/airplane-1/nlp.txt").read_text().strip()
    plain = build_tracker("nanotrack_v2")
    wrapped = build_chattracker(build_tracker("nanotrack_v2"), settings(tmp_path))
    wrapped.grounder = grounder
    plain_boxes, wrapped_boxes = [first.to_list()], [first.to_list()]
    for index, file in enumerate(files):  # streamed: 600 decoded frames would hold 400 MB
        frame = read_image(file)
        if index == 0:
            plain.initialize(frame, first, text)
            wrapped.initialize(frame, first, text)
            continue
        plain_boxes.append(plain.track(frame).box.to_list())
        wrapped_boxes.append(wrapped.track(frame).box.to_list())
    assert "airplane" in wrapped.descriptions[0].foreground
    events = [e["event"] for e in wrapped.events]
    assert events and set(events) == {"refresh"}, wrapped.events  # only template refreshes, no switch
    index = wrapped.events[0]["frame"] - 1
    # Refreshed because the target grew: the confirming detection is 1.5x the template's area.
    assert Box.from_any(wrapped.events[0]["proposal"]).area > 1.5 * first.area
    np.testing.assert_allclose(wrapped_boxes[:index], plain_boxes[:index])  # identical until then
    assert success_auc(np.array(wrapped_boxes), truth) > success_auc(np.array(plain_boxes), truth) + 0.03
    end = slice(570, 600)  # where the plain tracker has lost the airplane
    assert np.mean([Box.from_any(b).iou(Box.from_any(t)) for b, t in zip(wrapped_boxes[end], truth[end])]) > 0.4  # measured 0.47 with one refresh (refresh_scale 2.0), 0.62 with two (1.5)
    assert np.mean([Box.from_any(b).iou(Box.from_any(t)) for b, t in zip(plain_boxes[end], truth[end])]) < 0.1


class GivesUpTracker:
    """pytracking-style: follows the ground truth, then reports no box from frame ``at`` on (it lost the target)."""

    def __init__(self, truth, at: int) -> None:
        self.truth, self.at, self.index = truth, at, 0

    def initialize(self, image, info):
        self.index = 0

    def track(self, image, info=None):
        self.index += 1
        if self.index >= self.at:
            return {"target_bbox": None, "score": 0.0}
        return {"target_bbox": list(self.truth[self.index]), "score": 0.9}


@pytest.mark.xfail(strict=True, reason="issue 35 redesign: a base that reports no box is stood in for by the "
                   "motion prior, whose tracklet the path keeps; the detection where the target still is does not "
                   "outweigh the switching cost within 30 frames (measured: no re-initialisation)")
def test_base_reporting_no_box_is_recovered_where_the_target_still_is(crossing, grounder, tmp_path):
    frames, truth = crossing
    inner = GivesUpTracker(truth, at=15)
    wrapped = ChatTracker(PytrackingAdapter(inner), grounder=grounder,
                          config=FusionConfig.from_dict(settings(tmp_path, foreground="person", background="car")))
    results = run(wrapped, frames[:30], Box.from_any(truth[0]))
    assert all(r.box is not None for r in results[:15])
    recovered = [e for e in wrapped.events if e["event"] == "reinitialize"]
    assert recovered and recovered[0]["reason"] == "recovered (base reports none)" and recovered[0]["frame"] <= 19
    index = recovered[0]["frame"] - 1
    assert results[index].box.iou(Box.from_any(truth[index])) > 0.5
    # The base was re-initialised on each recovery (its counter restarted at the last one); the stub
    # then replays the ground truth from frame 2, a wrong place that can cause a second recovery.
    assert inner.index == 30 - recovered[-1]["frame"]


def test_no_template_refresh_while_the_woman_walks_behind_the_car(shared_data, weights_env, grounder, tmp_path):
    """OTB Woman, frames 200-225: she walks behind a parked car; NanoTrack's box and YOLOX's box both
    shrink to her upper body for two rounds (the detector's area about 0.4 of the template's), which reads
    as a change of scale. The shrink's missing part lies under the car the round found, so no new template
    is cut from her upper body (it cost 5.2 AUC when one was); without that rule the refresh happens."""
    sequence = real_sequences(shared_data)["Woman"]
    files, truth = list_images(sequence.frames)[:240], sequence.ground_truth[:240]
    first = Box.from_any(truth[0])
    frames = [read_image(f) for f in files]
    refreshes = {}
    for rule in ("on", "off"):
        wrapped = build_chattracker(build_tracker("nanotrack_v2"), settings(tmp_path))
        wrapped.grounder = grounder
        if rule == "off":
            wrapped._occluded_shrink = lambda decision: False
        run(wrapped, frames, first, "woman next to the car")  # OTB99-lang's sentence
        assert "car" in wrapped._phrases()[1]  # the sentence names the car, so the rounds find it
        refreshes[rule] = [e["frame"] for e in wrapped.events if e["event"] == "refresh"]
    assert refreshes["on"] == []
    assert refreshes["off"] and 210 <= refreshes["off"][0] <= 230, refreshes


def test_refresh_settings_are_checked(weights_env):
    for key, value in (("refresh_iou", 1.5), ("refresh_occluded", -0.1), ("refresh_rounds", 0)):
        with pytest.raises(ConfigError, match=key):
            FusionConfig.from_dict({key: value})
