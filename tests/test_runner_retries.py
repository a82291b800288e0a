"""`--retries N`: a sequence whose worker dies is tried exactly N + 1 times (the first run and N retries), each retry
is announced, and the failure names the reason and the attempt count. A fake backend loses every job, so no worker
process or tracker is built."""

from __future__ import annotations

import json
import logging

import pytest

from chattracker.cli import main
from chattracker.results import format_boxes
from chattracker_eval.backends import Completion
from chattracker_eval.runner import DEFAULT_RETRIES, Workers, run_benchmark


class LosingBackend:
    """Every submitted job comes back lost, as when its worker process is killed."""

    slots = 2

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self._queue: list = []

    def submit(self, job) -> None:
        self.submitted.append(job.name)
        self._queue.append(job)

    def wait(self, timeout: float) -> list[Completion]:
        done = [Completion(job, lost="worker process failed: killed") for job in self._queue]
        self._queue = []
        return done

    def close(self) -> None:
        pass


def folder_dataset(root):
    for name in ("seq_a", "seq_b"):
        (root / name / "img").mkdir(parents=True)
        (root / name / "groundtruth.txt").write_text("1,1,5,5\n")
        (root / name / "img" / "0001.jpg").write_bytes(b"never read: every worker is lost")
    return root


@pytest.fixture
def backend(monkeypatch):
    backend = LosingBackend()
    monkeypatch.setattr(Workers, "start", lambda self, jobs: backend)
    return backend


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_retries_n_tries_a_lost_sequence_exactly_n_plus_1_times(tmp_path, backend, caplog, capsys, retries):
    root = folder_dataset(tmp_path / "data")
    with caplog.at_level(logging.WARNING, logger="chattracker_eval.runner"):
        code = main(["eval", "--dataset", "folder", "--root", str(root), "--tracker", "kcf", "--results",
                     str(tmp_path / "out"), "--workers", "2", "--retries", str(retries), "--no-progress"])
    assert code == 1
    assert sorted(backend.submitted) == sorted(["seq_a", "seq_b"] * (retries + 1))
    printed = capsys.readouterr().out.splitlines()
    for name in ("seq_a", "seq_b"):
        assert f"failed {name}: worker process failed: killed (tried {retries + 1} time(s))" in printed
    announced = sorted(record.getMessage() for record in caplog.records if "trying again" in record.getMessage())
    assert announced == sorted(f"sequence {name}: worker process failed: killed; trying again ({k} of {retries} retries)"
                               for name in ("seq_a", "seq_b") for k in range(1, retries + 1))


def test_the_default_is_two_retries_and_the_outcome_counts_the_attempts(tmp_path, backend):
    from chattracker_eval.datasets import load_dataset

    root = folder_dataset(tmp_path / "data")
    outcomes = run_benchmark(load_dataset("folder", root).sequences, "kcf", tmp_path / "out", Workers(workers=2),
                             progress=False)
    assert DEFAULT_RETRIES == 2 and len(backend.submitted) == 2 * (DEFAULT_RETRIES + 1)
    assert [(o.name, o.status, o.attempts) for o in outcomes] == [("seq_a", "failed", 3), ("seq_b", "failed", 3)]
    assert all(o.error == "worker process failed: killed (tried 3 time(s))" for o in outcomes)
    assert not list((tmp_path / "out").glob("seq_*"))


class FlakyBackend(LosingBackend):
    """Loses each job's first attempt; the second returns ``results[name]`` (a SequenceResult)."""

    def __init__(self, results) -> None:
        super().__init__()
        self.results = results

    def wait(self, timeout: float) -> list[Completion]:
        done = [Completion(job, self.results[job.name]) if self.submitted.count(job.name) > 1
                else Completion(job, lost="worker process failed: killed") for job in self._queue]
        self._queue = []
        return done


def test_a_retry_that_succeeds_writes_the_results_and_counts_its_attempts(tmp_path, monkeypatch):
    from chattracker_eval.datasets import load_dataset
    from chattracker_eval.worker import SequenceResult

    root = folder_dataset(tmp_path / "data")
    results = {"seq_a": SequenceResult("seq_a", [[1.0, 2.0, 3.0, 4.0]], [0.25], seconds=1.5, build_seconds=0.5,
                                       warnings=["frame 1 repeated"], worker="w0", start={"box": [1, 2, 3, 4]}),
               "seq_b": SequenceResult("seq_b", error="TrackerError: lost it", seconds=0.5, worker="w1")}
    backend = FlakyBackend(results)
    monkeypatch.setattr(Workers, "start", lambda self, jobs: backend)
    out = tmp_path / "out"
    done, failed = run_benchmark(load_dataset("folder", root).sequences, "kcf", out, Workers(workers=2, retries=1),
                                 progress=False)
    assert (done.name, done.status, done.frames, done.attempts, done.seconds, done.build_seconds, done.worker) == (
        "seq_a", "done", 1, 2, 1.5, 0.5, "w0")
    assert done.warnings == ["frame 1 repeated"] and done.finished > 0 and not done.error
    assert (out / "seq_a.txt").read_text() == format_boxes([[1.0, 2.0, 3.0, 4.0]])
    assert (out / "seq_a_time.txt").read_text().strip() == "0.25"
    assert json.loads((out / "seq_a_start.json").read_text()) == {"box": [1, 2, 3, 4]}
    # a sequence the tracker failed on (no lost worker) is reported with the worker's error, not retried again
    assert (failed.name, failed.status, failed.error, failed.attempts, failed.frames) == (
        "seq_b", "failed", "TrackerError: lost it", 2, 0)
    assert not (out / "seq_b.txt").exists() and not (out / "seq_b_time.txt").exists()
    assert sorted(backend.submitted) == ["seq_a", "seq_a", "seq_b", "seq_b"]


def test_the_plan_picks_where_sequences_run():
    from chattracker_eval.backends import InlineBackend, PoolBackend

    assert isinstance(Workers(workers=1).start(5), InlineBackend)
    assert isinstance(Workers(workers=3).start(1), InlineBackend)  # one sequence: no pool to start
    assert isinstance(Workers(workers=None).start(5), InlineBackend)
    pool = Workers(workers=2, devices=["cpu", "cpu"]).start(5)
    try:
        assert isinstance(pool, PoolBackend) and pool.slots == 2 and pool.devices == ["cpu", "cpu"]
    finally:
        pool.close()
