"""Bad inputs and faults for `track`, `demo` and `describe`: each ends in one `chattracker: error:` line and a
non-zero exit, and nothing is lost or half-written (issue 14). Tables of bad inputs per command."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from chattracker.cli import main
from tests.helpers import assert_one_error_line as one_error_line
from chattracker.outputs import RunFolder, default_name, publish_folder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def crossing(shared_data) -> Path:
    return shared_data / "otb_crossing/Crossing/img"


def frames_folder(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    """PNG frames of the given (width, height) sizes, random texture so trackers have something to hold."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, (width, height) in enumerate(sizes, 1):
        cv2.imwrite(str(folder / f"{index:04d}.png"), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    return folder




def no_leftovers(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


# ---------------------------------------------------------------- track: a table of bad inputs

TRACK_CASES = [
    # (id, extra args, frame sizes or None for Crossing, message part)
    ("csrt-1px-wide", ["--box", "100,100,1,40", "--tracker", "csrt"], None, "too small for CSRT (needs at least 2x2 px)"),
    ("csrt-1x1-frames", ["--box", "0,0,1,1", "--tracker", "csrt", "--no-video"], [(1, 1)] * 3, "too small for CSRT"),
    ("mil-fills-frame", ["--box", "0,0,50,20", "--tracker", "mil"], [(100, 20)] * 3, "no room to move"),
    ("kcf-1x1-video", ["--box", "0,0,1,1", "--tracker", "kcf"], [(1, 1)] * 3, "cannot encode 1x1 frames"),
    ("size-changes", ["--box", "10,10,20,20", "--tracker", "kcf"], [(64, 48)] * 2 + [(48, 64)] + [(64, 48)],
     "frame 3 (0003.png) is 48x64 but the first frame is 64x48"),
    ("sub-pixel-box", ["--box", "100.2,100.2,0.5,0.5", "--tracker", "kcf"], None, "is smaller than one pixel"),
    ("outside", ["--box", "500,300,20,20", "--tracker", "kcf"], None, "outside the 360x240 frame"),
]


@pytest.mark.parametrize("case", TRACK_CASES, ids=[c[0] for c in TRACK_CASES])
def test_track_bad_input_table(case, crossing, tmp_path, capsys):
    _, args, sizes, message = case
    source = crossing if sizes is None else frames_folder(tmp_path / "seq" / "img", sizes)
    out = tmp_path / "out"
    code = main(["track", str(source), *args, "--max-frames", "5", "--out", str(out), "--no-progress"])
    err = one_error_line(capsys, code, message)
    assert ".partial" not in err  # never an internal staging path
    assert not out.exists()
    no_leftovers(tmp_path)


def test_corrupt_or_swapped_nanotrack_files_are_one_line(crossing, shared_data, tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    head = shared_data / "nanotrack_weights/v2/nanotrack_head_sim.onnx"
    backbone = shared_data / "nanotrack_weights/v2/nanotrack_backbone_sim.onnx"
    for pair in ((bad, head), (head, backbone)):
        config = tmp_path / "nano.yaml"
        config.write_text(f"tracker: nanotrack_v2\nparams: {{backbone: {pair[0]}, head: {pair[1]}}}\n")
        out = tmp_path / "out"
        code = main(["track", str(crossing), "--box", "205,151,17,50", "--config", str(config), "--max-frames", "3",
                     "--out", str(out), "--no-progress"])
        # Explicit weight paths are checked by sha256 before OpenCV sees them (a corrupt file and a
        # head given as the backbone are both rejected, naming the file).
        one_error_line(capsys, code, "rejected", str(pair[0]))
        assert not out.exists()


def test_mil_hang_case_ends_at_once_with_a_clear_line(crossing, tmp_path):
    """The real case that ran forever at 100% CPU: MIL with a 2x2 box, as a user runs it."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "chattracker.cli", "track", str(crossing), "--box", "100,100,2,2",
                           "--tracker", "mil", "--max-frames", "5", "--no-video", "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "too small for MIL's Haar features" in lines[0], done.stderr
    assert not out.exists()
    no_leftovers(tmp_path)


@pytest.mark.parametrize("size, fits", [((4, 4), False), ((5, 5), True), ((3, 5), False), ((3, 6), True),
                                        ((2, 10), False), ((2, 20), True), ((1, 200), False), ((10, 2), False)])
def test_mil_box_limit_matches_opencv(size, fits):
    """Measured with cv2.TrackerMIL (4x4, 3x5, 2x10, 1x200 never return; the others track)."""
    from chattracker_trackers.opencv import haar_feature_fits

    assert haar_feature_fits(*size) is fits


OUT_CASES = [
    ("out-is-a-file", lambda tmp: (tmp / "file.txt", "is a file, not a folder")),
    ("out-in-proc", lambda tmp: (Path("/proc/chattracker-test/out"), "cannot write into /proc/chattracker-test")),
    ("out-under-a-file", lambda tmp: (tmp / "file.txt" / "out", "cannot write into")),
    ("out-not-ours", lambda tmp: (tmp / "photos", "holds no track.json: not a result folder")),
]


@pytest.mark.parametrize("case", OUT_CASES, ids=[c[0] for c in OUT_CASES])
def test_track_unusable_out_is_refused_before_tracking(case, crossing, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("keep me")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_text("keep me too")
    out, message = case[1](tmp_path)
    code = main(["track", str(crossing), "--box", "205,151,17,50", "--tracker", "kcf", "--out", str(out),
                 "--overwrite", "--no-progress"])
    one_error_line(capsys, code, message)
    assert (tmp_path / "file.txt").read_text() == "keep me"
    assert (tmp_path / "photos" / "holiday.jpg").read_text() == "keep me too"
    no_leftovers(tmp_path)


def test_results_of_another_run_need_overwrite_and_are_replaced_whole(crossing, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["track", str(crossing), "--box", "205,151,17,50", "--tracker", "kcf", "--max-frames", "4", "--out", str(out),
            "--no-progress"]
    assert main(base) == 0
    assert sorted(p.name for p in out.iterdir()) == ["annotated.mp4", "boxes.txt", "track.json"]
    before = (out / "boxes.txt").read_text()
    capsys.readouterr()
    one_error_line(capsys, main([*base, "--no-video"]), "already holds the results of another run", "--overwrite")
    assert (out / "boxes.txt").read_text() == before and (out / "annotated.mp4").is_file()
    assert main([*base, "--no-video", "--max-frames", "3", "--overwrite"]) == 0
    # the whole folder is the new run's: no stale annotated.mp4 from the earlier one
    assert sorted(p.name for p in out.iterdir()) == ["boxes.txt", "track.json"]
    assert len((out / "boxes.txt").read_text().splitlines()) == 3
    no_leftovers(tmp_path)


def test_publish_is_all_or_nothing(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "track.json").write_text("old")
    (out / "annotated.mp4").write_text("old video")
    folder = RunFolder(out, "track.json", overwrite=True)
    (folder.staging / "track.json").write_text("new")
    (folder.staging / "boxes.txt").write_text("new boxes")
    real_rename, calls = os.rename, []

    def rename(source, target):
        calls.append(target)
        if len(calls) == 2:  # moving the new folder in fails (disk full, permissions ...)
            raise PermissionError(13, "Permission denied", str(target))
        return real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(PermissionError):
        folder.publish()
    monkeypatch.setattr(os, "rename", real_rename)
    folder.discard()
    assert sorted(p.name for p in out.iterdir()) == ["annotated.mp4", "track.json"]
    assert (out / "track.json").read_text() == "old" and (out / "annotated.mp4").read_text() == "old video"
    no_leftovers(tmp_path)


def test_publish_refuses_to_replace_a_file(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    (tmp_path / "out").write_text("a file")
    with pytest.raises(Exception, match="is a file"):
        publish_folder(staging, tmp_path / "out")
    assert (tmp_path / "out").read_text() == "a file"


def test_default_names_do_not_collide(crossing, tmp_path, monkeypatch, capsys):
    assert default_name(crossing) == "Crossing"
    assert default_name(crossing / "0001.jpg") == "Crossing_0001"
    assert default_name(tmp_path / "clip.mp4") == "clip"
    monkeypatch.chdir(tmp_path)
    args = ["track", str(crossing), "--box", "205,151,17,50", "--tracker", "kcf", "--max-frames", "2", "--no-video",
            "--no-progress"]
    assert main(args) == 0 and main(args) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["Crossing", "Crossing-2"]


def test_files_are_readable_by_others_and_the_float_box_is_not_called_clipped(crossing, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        assert main(["track", str(crossing), "--box", "205.5,151.2,17.3,50.9", "--tracker", "kcf", "--max-frames", "3",
                     "--out", str(out), "--no-progress"]) == 0
    assert "clipped" not in caplog.text
    umask = os.umask(0)
    os.umask(umask)
    for path in [out, *out.iterdir()]:
        mode = stat.S_IMODE(path.stat().st_mode)
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert mode == expected, (path.name, oct(mode))


def test_one_frame_has_no_made_up_speed(crossing, tmp_path, capsys):
    assert main(["track", str(crossing), "--box", "205,151,17,50", "--tracker", "kcf", "--max-frames", "1",
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "n/a fps (only the first frame)" in out and "1000000000" not in out


def test_cut_short_jpeg_and_truncated_video_warn(crossing, tmp_path, caplog):
    folder = tmp_path / "seq" / "img"
    folder.mkdir(parents=True)
    for name in ("0001.jpg", "0002.jpg", "0003.jpg"):
        shutil.copy(crossing / name, folder / name)
    data = (folder / "0002.jpg").read_bytes()
    (folder / "0002.jpg").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        assert main(["track", str(folder), "--box", "205,151,17,50", "--tracker", "kcf", "--no-video",
                     "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert "0002.jpg is cut short (no JPEG end marker)" in caplog.text
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for index in range(60):
        writer.write(np.full((48, 64, 3), index * 4, np.uint8))
    writer.release()
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["track", str(video), "--box", "10,10,20,20", "--tracker", "kcf", "--no-video",
                     "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    assert "of the 60 frames its header announces (truncated?)" in caplog.text


def test_sigterm_leaves_no_partial_folder(shared_data, tmp_path):
    woman = shared_data / "otb_woman_lang/Woman/img"
    process = subprocess.Popen([sys.executable, "-m", "chattracker.cli", "track", str(woman), "--box", "213,121,21,95",
                                "--tracker", "csrt", "--out", str(tmp_path / "out"), "--no-progress"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not [p for p in tmp_path.iterdir() if ".partial-" in p.name] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143 and "terminated" in err, err
    assert not (tmp_path / "out").exists()
    no_leftovers(tmp_path)


def test_help_tells_how_to_give_a_negative_box(capsys):
    with pytest.raises(SystemExit):
        main(["track", "--help"])
    assert "--box=-3,5,40,60" in " ".join(capsys.readouterr().out.split())


# ---------------------------------------------------------------- demo

def test_demo_frames_must_leave_something_to_track(tmp_path, capsys):
    for frames in ("0", "1", "-5"):
        code = main(["demo", "--frames", frames, "--out", str(tmp_path / "d"), "--no-progress"])
        one_error_line(capsys, code, "--frames must be at least 20")
    assert not (tmp_path / "d").exists()


def test_demo_unwritable_out_is_one_line(tmp_path, capsys):
    code = main(["demo", "--frames", "20", "--out", "/proc/chattracker-test/demo", "--no-progress"])
    one_error_line(capsys, code, "/proc/chattracker-test")


# ---------------------------------------------------------------- describe

from tests.test_describe_cli import BOX, fakes, frame_file  # noqa: E402,F401  (fixtures)

DESCRIBE_CASES = [
    ("image-is-a-folder", lambda tmp, frame: [str(tmp), "--box", BOX], "is a folder, not an image"),
    ("cache-is-a-file", lambda tmp, frame: [str(frame), "--box", BOX, "--cache", str(frame)], "--cache"),
    ("out-is-a-file", lambda tmp, frame: [str(frame), "--box", BOX, "--out", str(frame)], "is a file, not a folder"),
    ("out-in-proc", lambda tmp, frame: [str(frame), "--box", BOX, "--out", "/proc/chattracker-test/o"], "/proc"),
    ("rpo-iterations-text", lambda tmp, frame: [str(frame), "--box", BOX, "--config", _config(tmp, "rpo: {iterations: x}")],
     "rpo.iterations must be an integer, got 'x'"),
    ("rpo-iterations-float", lambda tmp, frame: [str(frame), "--box", BOX, "--config", _config(tmp, "rpo: {iterations: 2.7}")],
     "rpo.iterations must be an integer, got 2.7"),
    ("rpo-max-boxes-word", lambda tmp, frame: [str(frame), "--box", BOX, "--config", _config(tmp, "rpo: {max_boxes: ten}")],
     "rpo.max_boxes must be an integer, got 'ten'"),
    ("openai-max-tokens", lambda tmp, frame: [str(frame), "--box", BOX, "--config", _config(
        tmp, "describer: {name: openai, params: {max_tokens: lots}}")], "describer openai.max_tokens must be an integer"),
    ("openai-retries-float", lambda tmp, frame: [str(frame), "--box", BOX, "--config", _config(
        tmp, "describer: {name: openai, params: {retries: 2.5}}")], "describer openai.retries must be an integer, got 2.5"),
]


def _config(tmp: Path, text: str) -> str:
    path = tmp / "describe.yaml"
    path.write_text(text + "\n")
    return str(path)


@pytest.mark.parametrize("case", DESCRIBE_CASES, ids=[c[0] for c in DESCRIBE_CASES])
def test_describe_bad_input_table(case, frame_file, fakes, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = case[1](tmp_path, frame_file)
    before = frame_file.read_bytes()
    code = main(["describe", *args, "--describer", "test_scripted", "--grounder", "test_words"]
                if "--config" not in args else ["describe", *args, "--grounder", "test_words"])
    one_error_line(capsys, code, case[2])
    assert frame_file.read_bytes() == before
    assert not (tmp_path / "runs").exists()
    no_leftovers(tmp_path)


def test_describe_prints_model_escape_sequences_harmlessly(frame_file, fakes, tmp_path, monkeypatch, capsys):
    from chattracker.mllm.base import DESCRIBERS
    from tests.test_rpo_fakes import ScriptedDescriber

    monkeypatch.setitem(DESCRIBERS._factories, "test_evil", lambda: ScriptedDescriber(["red \x1b[2J\x1b[31mperson"]))
    assert main(["describe", str(frame_file), "--box", BOX, "--describer", "test_evil", "--grounder", "test_words",
                 "--iterations", "1", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "red \\x1b[2J\\x1b[31mperson" in out


def test_describe_default_names_per_sequence_frame(crossing, fakes, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["describe", str(crossing / "0001.jpg"), "--box", "205,151,17,50", "--describer", "test_scripted",
            "--grounder", "test_words", "--iterations", "1"]
    assert main(args) == 0 and main(args) == 0
    assert sorted(p.name for p in (tmp_path / "runs/describe").iterdir()) == ["Crossing_0001", "Crossing_0001-2"]
    png = next((tmp_path / "runs/describe/Crossing_0001").glob("*.png"), None)
    if png is not None:
        umask = os.umask(0)
        os.umask(umask)
        assert stat.S_IMODE(png.stat().st_mode) == 0o666 & ~umask


def test_read_only_rpo_cache_warns_and_goes_on(tmp_path, caplog, monkeypatch):
    from chattracker.rpo import RPOCache, RPOResult
    from chattracker.types import Description

    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")  # unwritable even for root
    cache = RPOCache(blocker / "sub")
    result = RPOResult(Description("red person", "car"), 1.0, {})
    with caplog.at_level(logging.WARNING):
        assert cache.get_or_run("key", lambda: result) is result
    assert "cannot be written" in caplog.text and "not cached" in caplog.text


def test_demo_out_a_file_is_refused_before_rendering(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("keep")
    code = main(["demo", "--frames", "20", "--out", str(tmp_path / "file.txt"), "--no-progress"])
    one_error_line(capsys, code, "is a file, not a folder")
    assert (tmp_path / "file.txt").read_text() == "keep"


def test_an_unforeseen_filesystem_error_is_still_one_line(crossing, tmp_path, capsys, monkeypatch):
    """Any OSError a command did not turn into a message itself (disk full while writing boxes.txt)."""
    import chattracker.commands.track as track_command

    def failing(number: int):
        def write(path, boxes):
            raise OSError(number, os.strerror(number), str(path))
        return write

    out = tmp_path / "out"
    command = ["track", str(crossing), "--box", "205,151,17,50", "--tracker", "kcf", "--max-frames", "3",
               "--out", str(out), "--no-progress"]
    monkeypatch.setattr(track_command, "write_boxes", failing(5))  # EIO: the file and the cause
    one_error_line(capsys, main(command), "boxes.txt: input/output error")
    # a full disk names the folder the user gave, not the staging file (issue 36)
    monkeypatch.setattr(track_command, "write_boxes", failing(28))
    one_error_line(capsys, main(command), f"cannot write the results into {out}: no space left on device")
    assert not out.exists()
    no_leftovers(tmp_path)


def test_unwritable_rpo_cache_with_the_wrapper_warns_and_tracks(crossing, weights_env, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")  # unwritable even for root
    monkeypatch.setenv("CHATTRACKER_CACHE", str(blocker))
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        code = main(["track", str(crossing), "--box", "205,151,17,50", "--tracker", "csrt", "--enhance", "--text",
                     "a man crossing the street", "--max-frames", "4", "--no-video", "--out", str(out), "--no-progress"])
    assert code == 0
    assert "RPO cache" in caplog.text and "cannot be written" in caplog.text
    assert len(json.loads((out / "track.json").read_text())["frames"]) == 4
    assert blocker.read_text() == "a file where the cache folder should be"
