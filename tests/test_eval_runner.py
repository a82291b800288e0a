"""The OPE runner on clips of real frames: init with box + language (--init box+language), resume after SIGKILL with no
partial files, failures reported without stopping the run, a process pool, and the report command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from chattracker.cli import main
from chattracker_eval.datasets import load_dataset
from chattracker_eval.runner import run_benchmark

REPO = Path(__file__).resolve().parents[1]


class Recorder:
    """A pytracking-style tracker that logs what initialize() received and drifts 1 px per frame;
    every 5th frame it reports the target lost (``target_bbox`` None)."""

    def __init__(self, log: str) -> None:
        self.log = Path(log)
        self.box: list[float] = []
        self.count = 0

    def initialize(self, image, info):
        self.box = list(info["init_bbox"])
        with self.log.open("a") as handle:
            handle.write(json.dumps({"box": self.box, "text": info.get("init_text"), "shape": list(image.shape)}) + "\n")

    def track(self, image):
        self.count += 1
        self.box = [self.box[0] + 1, self.box[1], self.box[2], self.box[3]]
        return {"target_bbox": None if self.count % 5 == 0 else list(self.box)}


class Crasher:
    """Dies like a segfaulting native tracker would: the whole worker process exits."""

    def initialize(self, image, info):
        pass

    def track(self, image):
        os._exit(3)


def make_clips(source: Path, gt_file: Path, out: Path, count: int, length: int, language: str | None = None) -> Path:
    """``count`` sequences of ``length`` real frames each (symlinks) with their real boxes."""
    frames = sorted(source.glob("*.jpg"))
    boxes = gt_file.read_text().replace("\t", ",").splitlines()
    for k in range(count):
        folder = out / f"clip{k:02d}"
        (folder / "img").mkdir(parents=True)
        for i in range(length):
            os.symlink(frames[k * length + i], folder / "img" / f"{i + 1:04d}.jpg")
        (folder / "groundtruth.txt").write_text("\n".join(boxes[k * length:(k + 1) * length]) + "\n")
        if language:
            (folder / "language.txt").write_text(f"{language} {k}\n")
    return out


@pytest.fixture
def woman(shared_data):
    base = shared_data / "otb_woman_lang/Woman"
    return base / "img", base / "groundtruth_rect.txt"


def test_language_and_box_reach_the_tracker_and_lost_frames_hold_the_box(woman, tmp_path, capsys):
    root = make_clips(*woman, tmp_path / "data", count=2, length=12, language="woman next to the car")
    log = tmp_path / "init.jsonl"
    config = tmp_path / "recorder.yaml"
    config.write_text(f"tracker: pytracking\nparams:\n  factory: tests.test_eval_runner:Recorder\n"
                      f"  kwargs: {{log: {log}}}\n")
    results = tmp_path / "results"
    assert main(["eval", "--dataset", "folder", "--root", str(root), "--tracker", str(config),
                 "--init", "box+language", "--results", str(results), "--no-progress"]) == 0
    assert "ran 2" in capsys.readouterr().out
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    gt = load_dataset("folder", root).sequences
    assert [c["text"] for c in calls] == ["woman next to the car 0", "woman next to the car 1"]
    assert [c["box"] for c in calls] == [s.ground_truth[0].tolist() for s in gt]
    assert calls[0]["shape"] == [288, 352, 3]
    rows = np.loadtxt(results / "clip00.txt", delimiter=",")
    assert rows.shape == (12, 4) and rows[0].tolist() == gt[0].ground_truth[0].tolist()
    np.testing.assert_array_equal(rows[5], rows[4])        # frame 6: target lost -> previous box kept
    assert rows[6, 0] == rows[0, 0] + 6
    times = np.loadtxt(results / "clip00_time.txt")
    assert times.shape == (12,) and (times >= 0).all()


def test_sigkill_halfway_then_resume_runs_only_the_rest(woman, tmp_path):
    count, length = 8, 60
    root = make_clips(*woman, tmp_path / "data", count=count, length=length)
    results = tmp_path / "results"
    command = [sys.executable, "-m", "chattracker.cli", "eval", "--dataset", "folder", "--root", str(root),
               "--tracker", "kcf", "--results", str(results), "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if len(list(results.glob("clip*_time.txt"))) >= 2 and len(list(results.glob("clip??.txt"))) >= 2:
            break
        time.sleep(0.002)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = sorted(p.stem for p in results.glob("clip??.txt"))
    assert 2 <= len(done) < count
    for name in done:                                      # whatever exists is complete
        assert len((results / f"{name}.txt").read_text().splitlines()) == length
        assert len((results / f"{name}_time.txt").read_text().splitlines()) == length
    stamps = {name: (results / f"{name}.txt").stat().st_mtime_ns for name in done}
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"ran {count - len(done)} " in rerun.stdout and f"skipped {len(done)} already done" in rerun.stdout
    assert {name: (results / f"{name}.txt").stat().st_mtime_ns for name in done} == stamps
    assert sorted(p.stem for p in results.glob("clip??.txt")) == [f"clip{k:02d}" for k in range(count)]
    assert not list(results.glob(".*")), "temporary files left behind"
    assert all(len(p.read_text().splitlines()) == length for p in results.glob("clip??.txt"))


def test_failures_are_reported_at_the_end_and_the_rest_runs(woman, tmp_path, capsys):
    root = make_clips(*woman, tmp_path / "data", count=4, length=8)
    broken = root / "clip01" / "img" / "0001.jpg"
    broken.unlink()
    broken.write_bytes(b"not a jpeg")
    corrupt = root / "clip03" / "img" / "0004.jpg"        # a corrupt frame inside: warned, frame 3 reused
    corrupt.unlink()
    corrupt.write_bytes(b"not a jpeg either")
    (root / "clip02" / "groundtruth.txt").write_text("10,10,0,20\n" * 8)   # no area on frame 1
    results = tmp_path / "results"
    code = main(["eval", "--dataset", "folder", "--root", str(root), "--tracker", "kcf", "--results", str(results),
                 "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    assert "ran 2 " in out and "failed 2" in out
    assert "failed clip01: InputError: cannot read image" in out and "0001.jpg" in out
    assert "failed clip02: ValueError: first ground-truth box" in out
    assert "warning clip03: frame 4 unreadable" in out
    assert sorted(p.name for p in results.glob("clip*")) == ["clip00.txt", "clip00_time.txt", "clip03.txt",
                                                             "clip03_time.txt"]
    assert len((results / "clip03.txt").read_text().splitlines()) == 8


def test_process_pool_and_report(woman, tmp_path, capsys):
    root = make_clips(*woman, tmp_path / "data", count=3, length=10)
    benchmark = load_dataset("folder", root)
    outcomes = run_benchmark(benchmark.sequences, "kcf", tmp_path / "kcf", workers=2, progress=False)
    assert [(o.name, o.status) for o in outcomes] == [("clip00", "done"), ("clip01", "done"), ("clip02", "done")]
    assert main(["eval", "--dataset", "folder", "--root", str(root), "--tracker", "mil", "--results",
                 str(tmp_path / "mil"), "--sequences", "clip00", "clip02", "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "report"
    assert main(["report", "--benchmark", "folder", "--annotations", str(root), "--results", str(tmp_path / "kcf"),
                 "--results", str(tmp_path / "mil"), "--names", "KCF", "MIL", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sequences, official protocol" in printed
    for name in ("report.md", "report.csv", "success.png", "precision.png", "norm_precision.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "success.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "report.md").read_text()
    assert "| KCF | 3 | 0 |" in table and "| MIL | 2 | 1 |" in table and "clip01" in table
    header, *rows = (out / "report.csv").read_text().splitlines()
    assert header.startswith("tracker,results,protocol,benchmark,sequences,missing,auc") and len(rows) == 2


def test_report_per_attribute_plots_from_a_toolkit_layout(shared_data, tmp_path, capsys):
    real = shared_data / "lasot_toolkit"
    names = ["guitar-16", "shark-3", "sheep-5"]
    toolkit = tmp_path / "toolkit"
    for sub in ("annos/absent", "annos/att", "annos/nlp", "sequence_evaluation_config"):
        (toolkit / sub).mkdir(parents=True)
    for name in names:
        for sub in ("", "absent/", "att/", "nlp/"):
            (toolkit / "annos" / f"{sub}{name}.txt").write_bytes((real / "annos" / f"{sub}{name}.txt").read_bytes())
    (toolkit / "sequence_evaluation_config/testing_set.txt").write_text("\n".join(names))
    results = tmp_path / "gt"
    results.mkdir()
    for name in names:
        (results / f"{name}.txt").write_bytes((real / "annos" / f"{name}.txt").read_bytes())
    out = tmp_path / "report"
    assert main(["report", "--benchmark", "lasot", "--annotations", str(toolkit), "--results", str(results),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "LaSOT, 3 sequences, official protocol" in printed
    # POC, SV, ARC are shared by all three; ROT and BC by two; FOC by one (too few: the toolkit skips it)
    assert {p.name for p in (out / "attributes").glob("*_success.png")} == {
        "POC_success.png", "SV_success.png", "ARC_success.png", "ROT_success.png", "BC_success.png"}
    assert "| POC (Partial Occlusion) | 3 |" in (out / "report.md").read_text()


def test_a_dying_worker_fails_its_sequences_without_aborting_the_run(woman, tmp_path):
    root = make_clips(*woman, tmp_path / "data", count=2, length=4)
    config = tmp_path / "crash.yaml"
    config.write_text("tracker: pytracking\nparams: {factory: tests.test_eval_runner:Crasher}\n")
    outcomes = run_benchmark(load_dataset("folder", root).sequences, str(config), tmp_path / "out", workers=2,
                             progress=False)
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert all("worker process failed" in o.error for o in outcomes)
    assert not list((tmp_path / "out").glob("clip*"))
