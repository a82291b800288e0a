import json

import numpy as np

from chattracker.cli import main
from chattracker.demo_scene import DemoScene
from chattracker.video import FrameSource, list_images, natural_key


def test_demo_runs_without_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CHATTRACKER_WEIGHTS", raising=False)
    monkeypatch.setenv("CHATTRACKER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["demo", "--frames", "40", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "components: tracker csrt (auto)" in printed and "weights not found" in printed
    summary = json.loads((out / "track.json").read_text())
    assert summary["frames"] == 40 and summary["mean_iou"] > 0.5  # the first 40 frames are the easy part
    assert FrameSource(out / "annotated.mp4").num_frames == 40


def test_demo_uses_nanotrack_when_weights_found(weights_env, tmp_path, capsys):
    assert main(["demo", "--frames", "20", "--out", str(tmp_path / "d"), "--no-progress"]) == 0
    assert "components: tracker nanotrack_v2 (auto)" in capsys.readouterr().out


def test_demo_scene_is_deterministic_and_has_distractors():
    a, b = DemoScene(num_frames=5), DemoScene(num_frames=5)
    assert np.array_equal(a.frame(3), b.frame(3))
    assert len(a.distractors) >= 2 and a.frame(0).dtype == np.uint8


def test_natural_sort_and_image_only(tmp_path):
    for name in ["img10.jpg", "img2.jpg", "img1.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["img1.png", "img2.jpg", "img10.jpg"]
    assert natural_key("a2") < natural_key("a10")
