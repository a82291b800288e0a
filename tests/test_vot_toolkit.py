"""The real VOT toolkit (``vot evaluate`` then ``vot analysis``) drives ``chattracker trax``.

The stack is built in a temporary folder from real sequences of ../shared/data in the VOT layout
(``sequences/list.txt``, ``<seq>/sequence``, ``color/%08d.jpg``, ``groundtruth.txt``), clipped to a few
frames. The trajectories the toolkit records must equal, frame by frame, what ``chattracker track``
writes with the same deterministic tracker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chattracker.cli import main as cli_main
from chattracker_eval.datasets import load_dataset

pytestmark = [pytest.mark.shared, pytest.mark.slow]

FRAMES = 20
TRACKER = "csrt"
BIN = Path(sys.executable).parent


def _vot_sequence(target: Path, frames: list[Path], ground_truth_lines: list[str]) -> None:
    (target / "color").mkdir(parents=True)
    for index, frame in enumerate(frames, start=1):
        os.symlink(frame, target / "color" / f"{index:08d}.jpg")
    (target / "groundtruth.txt").write_text("\n".join(ground_truth_lines) + "\n")
    (target / "sequence").write_text("channels.color=color/%08d.jpg\nfps=30\nformat=default\n"
                                     f"name={target.name}\n")


def build_workspace(root: Path, data: Path) -> Path:
    """A VOT workspace with two clipped real sequences: bag (polygons) and Crossing (boxes)."""
    workspace = root / "workspace"
    sequences = workspace / "sequences"
    bag = data / "vot15_bag" / "bag"
    crossing = data / "otb_crossing" / "Crossing"
    _vot_sequence(sequences / "bag", sorted((bag / "imgs").glob("*.jpg"))[:FRAMES],
                  (bag / "groundtruth.txt").read_text().splitlines()[:FRAMES])
    crossing_lines = [",".join(line.split()) for line in
                      (crossing / "groundtruth_rect.txt").read_text().splitlines()[:FRAMES]]
    _vot_sequence(sequences / "Crossing", sorted((crossing / "img").glob("*.jpg"))[:FRAMES], crossing_lines)
    (sequences / "list.txt").write_text("bag\nCrossing\n")
    (workspace / "stack.yaml").write_text(
        "title: ChatTracker TraX test stack\n"
        "experiments:\n"
        "  baseline:\n"
        "    type: unsupervised\n"
        "    repetitions: 1\n"
        "    analyses:\n"
        "      - type: average_accuracy\n"
        "        name: accuracy\n"
        "        burnin: 0\n")
    (workspace / "trackers.ini").write_text(
        f"[ChatTracker_{TRACKER}]\n"
        f"label = ChatTracker {TRACKER}\n"
        "protocol = trax\n"
        f"command = {BIN / 'chattracker'} trax --tracker {TRACKER}\n"
        "timeout = 120\n")
    (workspace / "config.yaml").write_text("registry:\n- ./trackers.ini\nstack: ./stack.yaml\n")
    return workspace


def _toolkit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VOT_RESULTS_BINARY": "false"}
    return subprocess.run([str(BIN / "vot"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def read_vot_trajectory(path: Path) -> list[list[float]]:
    """Rows of a VOT trajectory text file; ``[1]`` marks the initialisation frame."""
    return [[float(v) for v in line.split(",")] for line in path.read_text().splitlines() if line.strip()]


def test_vot_toolkit_runs_chattracker_over_trax(shared_data: Path, tmp_path: Path, capsys) -> None:
    workspace = build_workspace(tmp_path, shared_data)
    evaluated = _toolkit("evaluate", "--workspace", str(workspace), f"ChatTracker_{TRACKER}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    results = workspace / "results" / f"ChatTracker_{TRACKER}" / "baseline"
    benchmark = load_dataset("vot", workspace / "sequences")
    assert benchmark.sequences.names() == ["bag", "Crossing"]  # list.txt order, as the toolkit runs them
    for sequence in benchmark:
        recorded = read_vot_trajectory(results / sequence.name / f"{sequence.name}_001.txt")
        assert len(recorded) == FRAMES, evaluated.stdout + evaluated.stderr
        assert recorded[0] == [1.0]  # the toolkit's initialisation marker
        out = tmp_path / f"track_{sequence.name}"
        box = ",".join(repr(float(v)) for v in sequence.init_box)
        assert cli_main(["track", str(workspace / "sequences" / sequence.name / "color"), "--box", box,
                         "--tracker", TRACKER, "--no-video", "--no-progress", "--out", str(out)]) == 0
        ours = np.loadtxt(out / "boxes.txt", delimiter=",")
        assert ours.shape == (FRAMES, 4)
        np.testing.assert_array_equal(np.asarray(recorded[1:]), ours[1:])
        (tmp_path / "scored").mkdir(exist_ok=True)
        shutil.copy(out / "boxes.txt", tmp_path / "scored" / f"{sequence.name}.txt")

    capsys.readouterr()
    assert cli_main(["score", "--benchmark", "vot", "--annotations", str(workspace / "sequences"), "--results",
                     str(tmp_path / "scored"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_sequences"] == 2

    analysed = _toolkit("analysis", "--workspace", str(workspace), "--format", "json", "--name", "check",
                        f"ChatTracker_{TRACKER}", cwd=tmp_path)
    assert analysed.returncode == 0, analysed.stdout + analysed.stderr
    reports = list((workspace / "analysis").rglob("*.json"))
    assert len(reports) == 1, analysed.stdout + analysed.stderr
    analysis = json.loads(reports[0].read_text())
    assert list(analysis["trackers"]) == [f"ChatTracker_{TRACKER}"]
    accuracy = analysis["results"]["baseline"]["results"][0][0][0]
    assert 0.3 < accuracy <= 1.0  # csrt follows both clips (mean overlap 0.40 on bag, 0.84 on Crossing)


def test_trax_command_refuses_an_unknown_tracker_before_the_handshake() -> None:
    failed = subprocess.run([str(BIN / "chattracker"), "trax", "--tracker", "no_such_tracker"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2
    assert failed.stderr.startswith("chattracker: error: unknown tracker 'no_such_tracker'")
    assert "@@TRAX" not in failed.stdout


def test_enhanced_tracker_over_trax_reuses_the_rpo_cache_that_eval_filled(shared_data: Path, weights_env: Path,
                                                                        tmp_path: Path) -> None:
    """The first-frame description step inside the toolkit's timeout: ``chattracker eval`` on the same
    sequences fills the RPO cache, and the TraX server's initialisation finds its entry (no new RPO run)."""
    workspace = build_workspace(tmp_path, shared_data)
    (workspace / "sequences" / "list.txt").write_text("Crossing\n")
    shutil.rmtree(workspace / "sequences" / "bag")
    cache = tmp_path / "rpo-cache"
    config = tmp_path / "enhanced.yaml"
    config.write_text((Path(__file__).parents[1] / "configs" / "chattracker.yaml").read_text()
                      + f"  cache_dir: {cache}\n")
    (workspace / "trackers.ini").write_text(
        "[ChatTracker_enhanced]\nprotocol = trax\n"
        f"command = {BIN / 'chattracker'} -v trax --config {config} --log {tmp_path / 'server.log'}\n"
        "timeout = 120\n")
    results = tmp_path / "eval"
    assert cli_main(["eval", "--dataset", "vot", "--root", str(workspace / "sequences"), "--tracker", str(config),
                     "--results", str(results), "--no-progress"]) == 0
    cached = sorted(cache.glob("*.json"))
    assert len(cached) == 1
    evaluated = _toolkit("evaluate", "--workspace", str(workspace), "ChatTracker_enhanced", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert sorted(cache.glob("*.json")) == cached  # same key: the server reused the description
    assert f"RPO cache hit {cached[0].stem}" in (tmp_path / "server.log").read_text()
    recorded = read_vot_trajectory(workspace / "results" / "ChatTracker_enhanced" / "baseline" / "Crossing" /
                                   "Crossing_001.txt")
    ours = np.loadtxt(results / "Crossing.txt", delimiter=",")
    assert len(recorded) == FRAMES and recorded[0] == [1.0]
    # TraX carries rectangles as 32-bit floats
    np.testing.assert_allclose(np.asarray(recorded[1:]), ours[1:], rtol=0, atol=1e-4)
