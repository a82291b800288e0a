"""`--retries N`: a sequence whose worker dies is tried exactly N + 1 times (the first run and N retries), each retry
is announced, and the failure names the reason and the attempt count. A fake backend loses every job, so no worker
process or tracker is built."""

from __future__ import annotations

import logging

import pytest

from chattracker.cli import main
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
