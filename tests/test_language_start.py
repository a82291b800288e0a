"""Starting from a sentence alone (`track --text` without `--box`, `eval --init language`, the VL trackers'
keys in the adapters) on real frames of ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from chattracker.cli import main
from chattracker.language_start import LanguageStartConfig, NoTargetFound, build_language_start, find_target
from chattracker.types import Box
from chattracker.video import list_images, read_image
from chattracker_eval.protocols import OfficialProtocol, PytrackingProtocol
from tests.helpers import assert_one_error_line, real_sequences
from tests.test_eval_runner import make_clips

REPO = Path(__file__).resolve().parents[1]
# sot_dev sequences whose sentence (configs/sot_dev_sentences.yaml) finds the target on frame 1, measured;
# the others name a part (face, head, helmet) or a non-COCO object (toy), or fit a distractor better
# (Jogging-1), or sit just under IoU 0.5 (Basketball 0.497): see the README.
SOT_DEV_HITS = {"OTB_Couple", "OTB_MotorRolling", "OTB_Skiing", "UAV123-10fps_group2_2"}


@pytest.fixture(scope="module")
def start_parts(shared_data):
    return build_language_start({})


def _first_two(folder: Path, gap: int):
    files = list_images(folder)
    return read_image(files[0]), read_image(files[gap])


@pytest.mark.parametrize("name, sentence", [("Woman", "woman next to the car"),
                                            ("airplane-1", "white airplane landing on ground")])
def test_the_sentences_of_the_real_sequences_find_their_target(shared_data, start_parts, name, sentence):
    config, grounder, describer = start_parts
    sequence = real_sequences(shared_data)[name]
    first, later = _first_two(sequence.frames, config.motion_gap)
    start = find_target(first, sentence, grounder, config, describer, later)
    assert start.target.box.iou(Box.from_any(sequence.ground_truth[0])) >= 0.5
    assert start.credible and start.lines()[0].startswith(f"language start: {sentence!r} -> box ")
    if name == "airplane-1":  # the parked airplane below is the runner-up the sentence could also mean
        assert len(start.candidates) >= 2 and start.candidates[1].box.iou(Box.from_any(sequence.ground_truth[0])) == 0


def test_written_sentences_find_the_sot_dev_targets(shared_data, start_parts):
    config, grounder, _ = start_parts
    sentences = yaml.safe_load((REPO / "configs/sot_dev_sentences.yaml").read_text())
    hits = set()
    for name, sentence in sentences.items():
        folder = shared_data / "sot_dev" / name
        first, later = _first_two(folder / "img", config.motion_gap)
        truth = Box.from_any([float(v) for v in (folder / "groundtruth.txt").read_text().splitlines()[0].split(",")])
        try:
            start = find_target(first, sentence, grounder, config, None, later, require_credible=False)
        except NoTargetFound:
            continue
        if start.target.box.iou(truth) >= 0.5:
            hits.add(name)
    assert len(sentences) == 11 and hits == SOT_DEV_HITS


def test_no_credible_target_is_one_error_listing_what_was_found(shared_data, start_parts):
    config, grounder, _ = start_parts
    first, _ = _first_two(real_sequences(shared_data)["Crossing"].frames, 1)
    with pytest.raises(NoTargetFound, match=r"no credible target for 'giraffe on the left'.*found person 0\.\d\d"):
        find_target(first, "giraffe on the left", grounder, config)
    with pytest.raises(Exception, match="min_score"):
        LanguageStartConfig(min_score=2.0)


def test_track_without_box_starts_from_the_sentence(shared_data, tmp_path, capsys):
    sequence = real_sequences(shared_data)["Crossing"]
    out = tmp_path / "run"
    assert main(["track", str(sequence.frames), "--text", "man in black walking across the road", "--tracker", "kcf",
                 "--max-frames", "8", "--no-video", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "language start: 'man in black walking across the road' -> box " in printed and "runner-up 2" in printed
    boxes = np.loadtxt(out / "boxes.txt", delimiter=",")
    start = json.loads((out / "start.json").read_text())
    assert boxes.shape == (8, 4) and boxes[0].tolist() == pytest.approx(start["target"]["box"], abs=0.01)
    assert Box.from_any(boxes[0]).iou(Box.from_any(sequence.ground_truth[0])) >= 0.5
    assert (out / "start.png").stat().st_size > 10_000
    assert json.loads((out / "track.json").read_text())["init"] == "language"
    code = main(["track", str(sequence.frames), "--tracker", "kcf", "--out", str(tmp_path / "x")])
    assert_one_error_line(capsys, code, "give --box x,y,w,h, or --text")
    code = main(["track", str(sequence.frames), "--text", "giraffe", "--tracker", "kcf", "--out", str(tmp_path / "y")])
    assert_one_error_line(capsys, code, "no credible target for 'giraffe'", "the detector found person")
    assert not (tmp_path / "y").exists()


def test_eval_init_language_predicts_frame_one_and_scores_it(shared_data, tmp_path, capsys):
    base = shared_data / "otb_woman_lang/Woman"
    root = make_clips(base / "img", base / "groundtruth_rect.txt", tmp_path / "data", count=2, length=10,
                      language="woman next to the car")
    results = tmp_path / "lang"
    named = tmp_path / "named.yaml"
    named.write_text("clip01: the toy figure held up in a hand\n")  # no COCO class: still a start, not credible
    assert main(["eval", "--dataset", "folder", "--root", str(root), "--tracker", "kcf", "--init", "language",
                 "--sentences", str(named), "--results", str(results), "--no-progress"]) == 0
    fallback = json.loads((results / "clip01_start.json").read_text())
    assert not fallback["credible"] and fallback["target"]["reading"] == "any object: person"
    assert "(--init language)" in capsys.readouterr().out
    record = json.loads((results / "run.json").read_text())
    assert record["init"] == "language" and record["done"] == ["clip00", "clip01"]
    truth = np.loadtxt(root / "clip00/groundtruth.txt", delimiter=",")
    rows = np.loadtxt(results / "clip00.txt", delimiter=",")
    chosen = json.loads((results / "clip00_start.json").read_text())["target"]["box"]
    assert rows[0].tolist() == pytest.approx(chosen, abs=0.01) and rows[0].tolist() != truth[0].tolist()
    assert Box.from_any(rows[0]).iou(Box.from_any(truth[0])) >= 0.5
    assert main(["score", "--benchmark", "folder", "--annotations", str(root), "--results", str(results), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["init"] == "language"
    code = main(["eval", "--dataset", "folder", "--root", str(root), "--tracker", "kcf", "--results", str(results),
                 "--no-progress"])
    assert_one_error_line(capsys, code, "started with --init language, not box")
    (root / "clip01/language.txt").unlink()
    code = main(["eval", "--dataset", "folder", "--root", str(root), "--tracker", "kcf", "--init", "language",
                 "--results", str(tmp_path / "other"), "--no-progress"])
    assert_one_error_line(capsys, code, "needs a sentence for every sequence; none for clip01")
    sentences = tmp_path / "s.yaml"
    sentences.write_text("clip07: a woman\n")
    code = main(["eval", "--dataset", "folder", "--root", str(root), "--tracker", "kcf", "--sentences", str(sentences),
                 "--results", str(tmp_path / "third"), "--no-progress"])
    assert_one_error_line(capsys, code, "no sequence clip07")


def test_scoring_keeps_a_predicted_frame_one_only_when_asked():
    truth = np.array([[10, 10, 20, 20]] * 4, dtype=float)
    results = truth.copy()
    results[0] = [100, 100, 20, 20]  # frame 1 predicted on the wrong object
    for protocol in (OfficialProtocol, lambda **k: PytrackingProtocol("otb", **k)):
        replaced = protocol().frame_errors(results, truth, None).iou
        kept = protocol(keep_first=True).frame_errors(results, truth, None).iou
        assert replaced[0] == pytest.approx(1.0) and kept[0] == 0.0 and (kept[1:] == replaced[1:]).all()


class JointNLTLike:
    """Reads the sentence under ``init_nlp`` and, without ``init_bbox``, grounds it itself (here: a fixed box),
    keeping it in ``state`` as pytracking trackers do."""

    def __init__(self):
        self.info = None

    def initialize(self, image, info):
        self.info = dict(info)
        self.state = list(info.get("init_bbox") or [30, 40, 50, 60])

    def track(self, image):
        return {"target_bbox": self.state}


def test_adapter_speaks_the_vl_trackers_keys_and_starts_them_from_language(shared_data):
    from chattracker.tracking import run_tracker
    from chattracker.toolkits.pytracking import PytrackingTracker
    from chattracker_trackers.pytracking import PytrackingAdapter

    frame = np.zeros((100, 120, 3), np.uint8)
    for key in ("init_text", "init_nlp", "language"):
        inner = JointNLTLike()
        PytrackingAdapter(inner, text_key=key).initialize(frame, Box(1, 2, 3, 4), "a red car")
        assert inner.info == {"init_bbox": [1, 2, 3, 4], key: "a red car"}
    inner = JointNLTLike()
    adapter = PytrackingAdapter(inner, text_key="init_nlp", language_init=True)
    records = run_tracker(adapter, [frame, frame], None, "a red car", progress=False)
    assert inner.info == {"init_nlp": "a red car"} and records[0].box == Box(30, 40, 50, 60)
    with pytest.raises(Exception, match="not set to start from language"):
        PytrackingAdapter(JointNLTLike()).initialize(frame, None, "a red car")
    # JointNLT's natural-language protocol driving ours: no init_bbox, the sentence under init_nlp.
    sequence = real_sequences(shared_data)["Woman"]
    first = read_image(list_images(sequence.frames)[0])
    ours = PytrackingTracker("kcf")
    out = ours.initialize(first, {"init_nlp": "woman next to the car"})
    assert Box.from_any(out["target_bbox"]).iou(Box.from_any(sequence.ground_truth[0])) >= 0.5
    round_trip = PytrackingAdapter(PytrackingTracker("kcf"), text_key="init_nlp", language_init=True)
    round_trip.initialize(first, None, "woman next to the car")
    assert round_trip.initial_box == Box.from_any(out["target_bbox"])


def test_eval_init_box_gives_the_tracker_no_sentence(shared_data, tmp_path):
    base = shared_data / "otb_woman_lang/Woman"
    root = make_clips(base / "img", base / "groundtruth_rect.txt", tmp_path / "data", count=1, length=3,
                      language="woman next to the car")
    log = tmp_path / "init.jsonl"
    config = tmp_path / "recorder.yaml"
    config.write_text(f"tracker: pytracking\nparams:\n  factory: tests.test_eval_runner:Recorder\n  kwargs: {{log: {log}}}\n")
    assert main(["eval", "--dataset", "folder", "--root", str(root), "--tracker", str(config),
                 "--results", str(tmp_path / "r"), "--no-progress"]) == 0
    assert json.loads(log.read_text())["text"] is None
