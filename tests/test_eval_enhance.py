"""``chattracker eval --enhance``: any registered base is wrapped with the shipped fusion settings without a
YAML file, written under a folder-safe name, and a config given with --enhance is one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import REPO_ROOT


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chattracker.cli", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=600)


def test_eval_enhance_wraps_a_registered_base(shared_data, tmp_path):
    env = {**os.environ, "CHATTRACKER_WEIGHTS": str(shared_data), "CHATTRACKER_CACHE": str(tmp_path / "cache")}
    results = tmp_path / "results"
    done = run_cli("eval", "--dataset", "otb", "--root", str(shared_data / "otb_crossing"), "--tracker", "csrt",
                   "--enhance", "--results", str(results), "--no-progress", env=env)
    assert done.returncode == 0, done.stderr
    boxes = np.loadtxt(results / "Crossing.txt", delimiter=",")
    assert boxes.shape == (120, 4) and np.all(np.isfinite(boxes[0]))
    record = json.loads((results / "run.json").read_text())
    assert record["tracker"] == "csrt+chattracker" and record["tracker_sha256"]

    config = REPO_ROOT / "configs" / "chattracker.yaml"
    bad = run_cli("eval", "--dataset", "otb", "--root", str(shared_data / "otb_crossing"), "--tracker", str(config),
                  "--enhance", "--results", str(tmp_path / "r2"), env=env)
    errors = [line for line in bad.stderr.splitlines() if line.startswith("chattracker: error:")]
    assert bad.returncode != 0 and len(errors) == 1 and "--enhance wraps a registered tracker name" in errors[0]
