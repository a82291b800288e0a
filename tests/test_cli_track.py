"""`chattracker track` end to end: AUC reproduction with NanoTrack v2 and every bad-input case."""

import json

import numpy as np
import pytest

from chattracker.cli import main
from chattracker.results import write_boxes
from tests.helpers import real_sequences, success_auc

# AUC of cv2.TrackerNano v2 on the real sequences (DESIGN.md section 6, shared/data READMEs).
REFERENCE_AUC = {"Crossing": 0.760, "Woman": 0.641, "bag": 0.789, "airplane-1": 0.663}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REFERENCE_AUC))
def test_track_plain_reproduces_reference_auc_from_bundled_weights(shared_data, tmp_path, name, capsys, monkeypatch):
    monkeypatch.delenv("CHATTRACKER_WEIGHTS", raising=False)  # the bundled files, not ../shared/data
    sequence = real_sequences(shared_data)[name]
    box = ",".join(repr(float(v)) for v in sequence.ground_truth[0])
    out = tmp_path / name
    code = main(["track", str(sequence.frames), "--box", box, "--plain", "--out", str(out),
                 "--no-progress", *(["--no-video"] if name != "Crossing" else [])])
    assert code == 0
    summary = capsys.readouterr().out
    assert f"tracked {len(sequence.ground_truth)} frames with nanotrack_v2" in summary and str(out) in summary
    assert "components: tracker nanotrack_v2 (nanotrack_v2_backbone bundled, nanotrack_v2_head bundled)" in summary
    boxes = np.loadtxt(out / "boxes.txt", delimiter=",")
    assert boxes.shape == sequence.ground_truth.shape
    auc = success_auc(boxes, sequence.ground_truth)
    print(f"{name}: AUC {auc:.4f} (reference {REFERENCE_AUC[name]:.3f})")
    assert abs(auc - REFERENCE_AUC[name]) <= 0.01
    record = json.loads((out / "track.json").read_text())
    assert record["tracker"] == "nanotrack_v2" and len(record["frames"]) == len(boxes)
    assert all(0 <= f["score"] <= 1 for f in record["frames"][1:])
    if name == "Crossing":
        assert (out / "annotated.mp4").stat().st_size > 10_000


def test_track_video_file_with_text_and_max_frames(shared_data, tmp_path, capsys):
    import cv2

    from chattracker.video import FrameSource, list_images

    video = tmp_path / "crossing.mp4"
    files = list_images(shared_data / "otb_crossing/Crossing/img")[:25]
    first = cv2.imread(str(files[0]))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25, first.shape[1::-1])
    for file in files:
        writer.write(cv2.imread(str(file)))
    writer.release()
    assert FrameSource(video).num_frames == 25
    out = tmp_path / "out"
    assert main(["track", str(video), "--box", "205,151,17,50", "--tracker", "csrt", "--text", "man in black",
                 "--max-frames", "10", "--out", str(out), "--no-progress"]) == 0
    assert len((out / "boxes.txt").read_text().splitlines()) == 10
    assert json.loads((out / "track.json").read_text())["text"] == "man in black"
    assert FrameSource(out / "annotated.mp4").num_frames == 10


def _bad(args, capsys, tmp_path, expected):
    out = tmp_path / "out"
    code = main([*args, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("chattracker: error:") and expected in err, err
    # Nothing half-written: no output folder and no leftover staging folders.
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial")]


@pytest.fixture
def crossing(shared_data) -> str:
    return str(shared_data / "otb_crossing/Crossing/img")


def test_box_outside_frame(crossing, capsys, tmp_path):
    _bad(["track", crossing, "--box", "500,300,20,20", "--tracker", "mil"], capsys, tmp_path, "outside the 360x240 frame")


def test_zero_size_box(crossing, capsys, tmp_path):
    _bad(["track", crossing, "--box", "10,10,0,20", "--tracker", "mil"], capsys, tmp_path, "zero or negative size")


def test_malformed_box(crossing, capsys, tmp_path):
    _bad(["track", crossing, "--box", "10,10,20", "--tracker", "mil"], capsys, tmp_path, "x,y,w,h")


def test_missing_source(capsys, tmp_path):
    _bad(["track", str(tmp_path / "nothing.mp4"), "--box", "1,1,5,5", "--tracker", "mil"], capsys, tmp_path, "does not exist")


def test_corrupt_video(capsys, tmp_path):
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    _bad(["track", str(video), "--box", "1,1,5,5", "--tracker", "mil"], capsys, tmp_path, "cannot read video")


def test_unreadable_frame_in_folder(shared_data, capsys, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, file in enumerate(sorted((shared_data / "otb_crossing/Crossing/img").iterdir())[:5]):
        (folder / f"{index:04d}.jpg").write_bytes(file.read_bytes())
    (folder / "0003.jpg").write_bytes(b"not a jpeg")
    _bad(["track", str(folder), "--box", "205,151,17,50", "--tracker", "mil"], capsys, tmp_path, "cannot read image")


def test_unknown_tracker(crossing, capsys, tmp_path):
    _bad(["track", crossing, "--box", "205,151,17,50", "--tracker", "nanotrak_v2"], capsys, tmp_path,
         "unknown tracker 'nanotrak_v2' (did you mean")


@pytest.mark.parametrize("text, expected", [
    ("tracker: mil\nparams: [1, 2\n", "malformed YAML at line"),
    ("- just\n- a list\n", "expected a mapping"),
    ("tracker: mil\nspeed: 3\n", "unknown setting(s) speed"),
    ("tracker: mil\nenhance: maybe\n", "'enhance' must be true or false"),
    ("tracker: mil\nparams: {speed: 3}\n", "bad parameters for tracker 'mil'"),
])
def test_malformed_config(crossing, capsys, tmp_path, text, expected):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    _bad(["track", crossing, "--box", "205,151,17,50", "--config", str(config)], capsys, tmp_path, expected)


def test_missing_config(crossing, capsys, tmp_path):
    _bad(["track", crossing, "--box", "205,151,17,50", "--config", str(tmp_path / "no.yaml")], capsys, tmp_path,
         "does not exist")


@pytest.mark.parametrize("choice", [[], ["--plain"], ["--tracker", "nanotrack_v2"]])
def test_missing_weights_offline_never_falls_back(crossing, capsys, tmp_path, monkeypatch, choice):
    """Without the bundled files the default is an error naming the file, not a silent CSRT."""
    from chattracker import weights

    monkeypatch.delenv("CHATTRACKER_WEIGHTS", raising=False)
    monkeypatch.setenv("CHATTRACKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CHATTRACKER_OFFLINE", "1")
    monkeypatch.setattr(weights, "bundled_dir", lambda: tmp_path / "no_bundled")
    _bad(["track", crossing, "--box", "205,151,17,50", *choice], capsys, tmp_path, "nanotrack_backbone_sim.onnx")


def test_plain_and_enhance_contradict(crossing, capsys, tmp_path):
    _bad(["track", crossing, "--box", "205,151,17,50", "--plain", "--enhance"], capsys, tmp_path, "contradict")


def test_track_default_is_chattracker_around_nanotrack_v2(crossing, tmp_path, capsys, monkeypatch):
    """No flags, no environment: the wrapper runs from bundled weights and records its language side."""
    monkeypatch.delenv("CHATTRACKER_WEIGHTS", raising=False)
    monkeypatch.setenv("CHATTRACKER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "default"
    assert main(["track", crossing, "--box", "205,151,17,50", "--max-frames", "25", "--out", str(out),
                 "--no-video", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert ("components: base nanotrack_v2 (nanotrack_v2_backbone bundled, nanotrack_v2_head bundled); "
            "describer attributes; grounder yolox (yolox_nano_coco bundled)") in printed
    assert "descriptions: frame 1: 'person" in printed and "corrections: " in printed
    assert "tracked 25 frames with chattracker:nanotrack_v2" in printed
    record = json.loads((out / "track.json").read_text())
    assert record["tracker"] == "chattracker:nanotrack_v2"
    assert record["components"]["base"] == "nanotrack_v2" and record["components"]["grounder"] == "yolox"
    assert {w["source"] for w in record["weights"].values()} == {"bundled"}
    assert record["descriptions"][0]["frame"] == 1 and record["descriptions"][0]["foreground"].startswith("person")
    assert isinstance(record["events"], list) and record["corrections"] == len(
        [e for e in record["events"] if e["event"] in ("reinitialize", "refresh", "recover", "redetect")])
    decided = [f for f in record["frames"] if "decision" in f]
    assert decided and all("candidates" in f for f in decided if f["decision"] != "absent")
    trace = json.loads((out / "rpo_trace.json").read_text())
    assert trace[0]["description"]["foreground"] == record["descriptions"][0]["foreground"]
    assert trace[0]["trace"]["rounds"]


def test_config_file_selects_tracker(crossing, tmp_path, capsys):
    config = tmp_path / "kcf.yaml"
    config.write_text("tracker: kcf\n")
    out = tmp_path / "kcf"
    assert main(["track", crossing, "--box", "205,151,17,50", "--config", str(config), "--max-frames", "5",
                 "--out", str(out), "--no-video", "--no-progress"]) == 0
    assert json.loads((out / "track.json").read_text())["tracker"] == "kcf"


def test_results_are_comma_separated_full_precision(tmp_path):
    path = tmp_path / "r.txt"
    write_boxes(path, [[1.25, 2.0, 3.3333333333, 4.0], [float("nan")] * 4])
    assert path.read_text() == "1.25,2.0,3.3333333333,4.0\nnan,nan,nan,nan\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
