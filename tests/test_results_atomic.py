"""Atomic result writes proven by injected faults, not by hoping a kill lands inside a write.

Protects ``chattracker.results.atomic_write_text`` (temp file in the same folder + ``os.replace``) and what the
OPE runner builds on it: a sequence counts as done exactly when its complete ``<seq>.txt`` exists. Faults:
the rename fails, the write fails midway (the file-size limit ``RLIMIT_FSIZE`` makes the kernel refuse the
bytes past it, as a full disk would), and the process dies midway (the same limit with ``SIGXFSZ`` at its
default action, which kills the process inside ``write``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from chattracker import results
from chattracker.results import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
FRAMES = 40
LIMIT = 2048  # bytes: the times file (~21 bytes a line) fits, the boxes file (~75 bytes a line) does not


def test_failed_rename_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "seq.txt"
    target.write_text("old\n")

    def refuse(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results.os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "new contents\n" * 100)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["seq.txt"], "a temp file was left behind"


def _write_in_child(script: str, *args: str, kill_on_limit: bool) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter whose files may not grow past LIMIT bytes (after its imports)."""
    prelude = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, {"signal.SIG_DFL" if kill_on_limit else "signal.SIG_IGN"})
        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, {LIMIT}))
        """)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("existing", [False, True])
def test_write_failing_midway_leaves_no_partial_file(tmp_path, existing):
    target = tmp_path / "seq.txt"
    if existing:
        target.write_text("old\n")
    child = _write_in_child("""
        from chattracker.results import atomic_write_text
        limit()
        try:
            atomic_write_text(sys.argv[1], "0123456789" * 1000)
        except OSError as error:
            print("refused", error.errno)
        """, str(target), kill_on_limit=False)
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("refused"), "the 10 kB write past the 2 kB limit did not fail"
    assert (target.read_text() == "old\n") if existing else not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["seq.txt"] if existing else []), "a temp file was left behind"


class _Drifting:
    """A tracker moving its box by an irrational step: every number has 17 significant digits."""

    name = "drifting"

    def initialize(self, frame, box, text=None):
        from chattracker.types import Box

        self.box = Box(*box.to_list())

    def track(self, frame):
        from chattracker.types import Box, TrackResult

        step = 0.1234567891234567
        self.box = Box(self.box.x + step, self.box.y + step, self.box.w * (1 + step / 7), self.box.h * (1 + step / 9))
        return TrackResult(self.box, 1.0)


RUNNER = """
    import json
    from chattracker_eval import runner, worker
    from chattracker_eval.datasets import load_dataset
    from tests.test_results_atomic import _Drifting
    worker.build_tracker_from_spec = lambda spec: _Drifting()  # workers build trackers (eval/worker.py)
    sequences = load_dataset("folder", sys.argv[1]).sequences
    if sys.argv[3] == "limit":
        limit()
    outcomes = runner.run_benchmark(sequences, "drifting", sys.argv[2], progress=False)
    print(json.dumps({o.name: o.status for o in outcomes}))
    """


def _dataset(root: Path, names: list[str]) -> Path:
    rng = np.random.default_rng(0)
    for name in names:
        (root / name / "img").mkdir(parents=True)
        for index in range(FRAMES):
            cv2.imwrite(str(root / name / "img" / f"{index + 1:04d}.png"), rng.integers(0, 255, (24, 32, 3), np.uint8))
        (root / name / "groundtruth.txt").write_text("3.5,4.25,10.0,8.0\n" * FRAMES)
    return root


def test_process_dying_midway_leaves_no_partial_file_and_a_rerun_redoes_the_sequence(tmp_path):
    data, out = _dataset(tmp_path / "data", ["seqA", "seqB"]), tmp_path / "results"
    child = _write_in_child(RUNNER, str(data), str(out), "limit", kill_on_limit=True)
    assert child.returncode == -signal.SIGXFSZ, (child.returncode, child.stderr[-2000:])
    # seqA's times file (written first) fits under the limit; the process died writing its boxes file
    assert len((out / "seqA_time.txt").read_text().splitlines()) == FRAMES
    assert not (out / "seqA.txt").exists(), "a partial result file was left where a finished one belongs"
    assert not (out / "seqB.txt").exists()
    rerun = _write_in_child(RUNNER, str(data), str(out), "no-limit", kill_on_limit=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads(rerun.stdout) == {"seqA": "done", "seqB": "done"}  # seqA was not taken as finished
    for name in ("seqA", "seqB"):
        rows = (out / f"{name}.txt").read_text().splitlines()
        assert len(rows) == FRAMES and rows[0] == "3.5,4.25,10.0,8.0"
        assert len(rows[1]) > 60  # the drifting tracker's long numbers: the file is the complete one
    assert sorted(p.name for p in out.iterdir()) == ["seqA.txt", "seqA_time.txt", "seqB.txt", "seqB_time.txt"]
