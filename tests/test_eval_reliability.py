"""Eval record keeping (issue 14): one eval per results folder at a time, the folder belongs to one tracker
and configuration, run.json always describes the results, orphaned workers exit, bad --results is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from chattracker.cli import main
from tests.helpers import assert_one_error_line as one_error_line
from tests.test_eval_runner import make_clips, woman  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]


def eval_command(root: Path, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "chattracker.cli", "eval", "--dataset", "folder", "--root", str(root),
            "--tracker", "kcf", "--results", str(results), "--no-progress", *extra]




def result_names(results: Path) -> list[str]:
    return sorted(p.stem for p in results.glob("clip??.txt"))


def test_two_evals_on_one_folder_the_second_refuses_naming_the_holder(woman, tmp_path, capsys):
    root = make_clips(*woman, tmp_path / "data", count=8, length=60)
    results = tmp_path / "results"
    first = subprocess.Popen(eval_command(root, results), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            record = results / "run.json"
            if record.is_file() and "running" in json.loads(record.read_text()):
                break
            time.sleep(0.01)
        assert first.poll() is None, "the first eval finished before the second started"
        code = main(["eval", "--dataset", "folder", "--root", str(root), "--tracker", "kcf",
                     "--results", str(results), "--no-progress"])
        one_error_line(capsys, code, f"is in use by another eval (pid {first.pid} on", "chattracker eval --dataset folder")
        _, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, err
    record = json.loads((results / "run.json").read_text())
    assert record["done"] == result_names(results) == [f"clip{k:02d}" for k in range(8)]
    assert "running" not in record


def test_folder_belongs_to_one_tracker_and_sequences_only_grow(woman, tmp_path, capsys):
    root = make_clips(*woman, tmp_path / "data", count=3, length=5)
    results = tmp_path / "results"
    base = ["eval", "--dataset", "folder", "--root", str(root), "--results", str(results), "--no-progress"]
    assert main([*base, "--tracker", "kcf", "--sequences", "clip00", "clip01"]) == 0
    capsys.readouterr()
    # a rerun with another tracker would skip everything and relabel kcf's results: refused
    code = main([*base, "--tracker", "mil"])
    one_error_line(capsys, code, "holds results of tracker 'kcf'", "not of 'mil'")
    # another configuration of the same name is another tracker too
    config = tmp_path / "kcf.yaml"
    config.write_text("tracker: kcf\nenhance: false\n")
    one_error_line(capsys, main([*base, "--tracker", str(config)]), "holds results of tracker 'kcf'")
    record = json.loads((results / "run.json").read_text())
    assert record["tracker"] == "kcf" and record["done"] == ["clip00", "clip01"]
    # a --sequences rerun (twice the same name) runs it once and keeps the list whole
    assert main([*base, "--tracker", "kcf", "--sequences", "clip02", "clip02"]) == 0
    assert "ran 1 " in capsys.readouterr().out
    record = json.loads((results / "run.json").read_text())
    assert record["sequences"] == record["done"] == ["clip00", "clip01", "clip02"] == result_names(results)


@pytest.mark.parametrize("kind", ["file", "under-a-file", "proc"])
def test_bad_results_folder_is_one_line(woman, tmp_path, capsys, kind):
    root = make_clips(*woman, tmp_path / "data", count=1, length=3)
    (tmp_path / "file.txt").write_text("keep")
    results = {"file": tmp_path / "file.txt", "under-a-file": tmp_path / "file.txt" / "r",
               "proc": Path("/proc/chattracker-test/results")}[kind]
    code = main(["eval", "--dataset", "folder", "--root", str(root), "--tracker", "kcf", "--results", str(results),
                 "--no-progress"])
    one_error_line(capsys, code, str(results.parent if kind == "proc" else results).split("/r")[0])
    assert (tmp_path / "file.txt").read_text() == "keep"


def test_workers_exit_when_the_main_process_is_killed(woman, tmp_path):
    root = make_clips(*woman, tmp_path / "data", count=5, length=110)
    results = tmp_path / "results"
    main_process = subprocess.Popen(eval_command(root, results, "--workers", "2"), cwd=REPO,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline and main_process.poll() is None:
            # spawn starts a resource tracker too; the workers are the ones running the pool's main loop
            workers = [p for p in psutil.Process(main_process.pid).children()
                       if "resource_tracker" not in _command_line(p)]
            if len(workers) == 2 and list(results.glob("clip*_time.txt")):
                break
            time.sleep(0.05)
        assert main_process.poll() is None and len(workers) == 2, "the pool did not start in time"
        os.kill(main_process.pid, signal.SIGKILL)
        main_process.wait()
        gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, f"orphaned workers still running: {[p.pid for p in alive]}"
    finally:
        main_process.kill()
        for process in psutil.process_iter():
            if process.pid != os.getpid() and str(results) in _command_line(process):
                try:
                    process.kill()
                except psutil.Error:  # gone already
                    pass
    for name in result_names(results):  # whatever was written is whole
        assert len((results / f"{name}.txt").read_text().splitlines()) == 110


def _command_line(process) -> str:
    """A process's command line, or '' for one that is gone or a zombie (other sessions' processes too)."""
    import psutil

    try:
        return " ".join(process.cmdline() or [])
    except psutil.Error:
        return ""
