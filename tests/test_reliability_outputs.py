"""Issue 36, outputs that must never eat their inputs or be half-written: `pack --out` onto one of its inputs,
an empty result file in `score`, stale staging folders of killed runs, full disks under `track` and `report`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from chattracker.cli import main
from tests.helpers import assert_one_error_line
from tests.test_benchmark_formats import got10k_root  # noqa: F401  (fixture)

BIN = Path(sys.executable).parent


def fake_results(root: Path, out: Path) -> Path:
    """A `<seq>.txt` and `<seq>_time.txt` per sequence of a GOT-10k split: the first box, repeated."""
    out.mkdir()
    for sequence in sorted(p for p in root.iterdir() if p.is_dir()):
        count = len(list(sequence.glob("*.jpg")))
        first = (sequence / "groundtruth.txt").read_text().splitlines()[0]
        (out / f"{sequence.name}.txt").write_text(f"{first}\n" * count)
        (out / f"{sequence.name}_time.txt").write_text("0.01\n" * count)
    return out


def test_pack_refuses_an_out_that_is_one_of_its_inputs(got10k_root, tmp_path, capsys):  # noqa: F811
    root = got10k_root / "test"
    results = fake_results(root, tmp_path / "results")
    before = {p.name: p.read_bytes() for p in results.iterdir()}
    for out in (results / "GOT-10k_Test_000001.txt", results, root / "list.txt"):
        code = main(["pack", "--format", "got10k", "--root", str(root), "--results", str(results), "--out", str(out)])
        assert_one_error_line(capsys, code, f"--out {out} is one of the inputs")
    assert {p.name: p.read_bytes() for p in results.iterdir()} == before
    # a new zip beside the results, and then replacing that zip, are fine
    for _ in range(2):
        code = main(["pack", "--format", "got10k", "--root", str(root), "--results", str(results),
                     "--out", str(results / "submission.zip")])
        assert code == 0, capsys.readouterr().err


def test_score_of_an_empty_result_file_is_an_error_like_a_short_one(got10k_root, tmp_path, capsys):  # noqa: F811
    root = got10k_root / "val"
    results = fake_results(root, tmp_path / "results")
    (results / "GOT-10k_Val_000002.txt").write_bytes(b"")
    code = main(["score", "--benchmark", "got10k", "--annotations", str(root), "--results", str(results)])
    assert_one_error_line(capsys, code, str(results / "GOT-10k_Val_000002.txt"), "empty result file",
                          "0 rows for 18 frames")
    short = np.loadtxt(results / "GOT-10k_Val_000001.txt", delimiter=",")[:5]
    (results / "GOT-10k_Val_000002.txt").write_text("".join(",".join(map(str, r)) + "\n" for r in short))
    code = main(["score", "--benchmark", "got10k", "--annotations", str(root), "--results", str(results)])
    assert_one_error_line(capsys, code, str(results / "GOT-10k_Val_000002.txt"))


# ---------------------------------------------------------------- report: per-sequence table, attributes (case 17)

def lasot_results(toolkit: Path, out: Path, names: list[str], shift: float) -> Path:
    """Result files for a few LaSOT test sequences: the ground truth moved by ``shift`` box widths."""
    out.mkdir(parents=True)
    for name in names:
        boxes = np.loadtxt(toolkit / "annos" / f"{name}.txt", delimiter=",", ndmin=2)
        boxes[1:, 0] += shift * boxes[1:, 2]
        np.savetxt(out / f"{name}.txt", boxes, fmt="%.2f", delimiter=",")
    return out


LASOT_SEQUENCES = ["airplane-1", "airplane-13", "airplane-15", "airplane-9", "basketball-1", "basketball-11"]


def test_report_writes_the_per_sequence_table_and_attribute_plots(shared_data, tmp_path, capsys):
    toolkit = shared_data / "lasot_toolkit"
    near = lasot_results(toolkit, tmp_path / "near", LASOT_SEQUENCES, 0.1)
    far = lasot_results(toolkit, tmp_path / "far", LASOT_SEQUENCES, 0.6)
    out = tmp_path / "report"
    assert main(["report", "--benchmark", "lasot", "--annotations", str(toolkit), "--results", str(near),
                 "--results", str(far), "--out", str(out)]) == 0, capsys.readouterr().err
    table = (out / "sequences.md").read_text().splitlines()
    assert table[4] == "| sequence | near AUC | near P | near P_norm | far AUC | far P | far P_norm |"
    rows = [line for line in table if line.startswith("| airplane") or line.startswith("| basketball")]
    assert len(rows) == len(LASOT_SEQUENCES)
    csv_rows = (out / "sequences.csv").read_text().splitlines()
    assert csv_rows[0] == "sequence,tracker,auc,precision,norm_precision" and len(csv_rows) == 1 + 2 * 6
    near_auc = {line.split(",")[0]: float(line.split(",")[2]) for line in csv_rows[1:] if ",near," in line}
    far_auc = {line.split(",")[0]: float(line.split(",")[2]) for line in csv_rows[1:] if ",far," in line}
    assert all(near_auc[s] > far_auc[s] for s in LASOT_SEQUENCES)
    plots = sorted(p.name for p in (out / "attributes").iterdir())
    assert "POC_success.png" in plots and len(plots) % 3 == 0 and len(plots) >= 3
    assert "sequences.md" in (out / "report.md").read_text()


# ---------------------------------------------------------------- full disks (case 10), killed runs (case 11)

def on_small_disk(disk: Path, size_kb: int, script: str) -> subprocess.CompletedProcess:
    """``script`` (sh) with a ``size_kb`` tmpfs mounted at ``disk``, in a private mount namespace (no root
    needed where user namespaces are allowed); skips where they are not."""
    disk.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no user+mount namespaces here for a small tmpfs ({probe.stderr.decode().strip()})")
    command = f"mount -t tmpfs -o size={size_kb}k tmpfs {disk} && {script}"
    return subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True, timeout=300,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})


def test_track_onto_a_full_disk_is_one_line_naming_out(shared_data, tmp_path):
    disk = tmp_path / "disk"
    done = on_small_disk(disk, 100, f"chattracker track {shared_data / 'otb_crossing/Crossing/img'} --box 205,151,17,50 "
                                    f"--tracker kcf --out {disk / 'out'} --no-progress; echo rc=$?; ls -A {disk}")
    err = done.stderr.decode().strip()
    assert err.splitlines() == [f"chattracker: error: cannot write the results into {disk / 'out'}: no space left "
                                "on device (nothing was written there)"], err
    assert done.stdout.decode().split() == ["rc=2"]  # and nothing left on the disk


def test_report_onto_a_full_disk_names_out_and_keeps_the_old_report(shared_data, tmp_path):
    toolkit = shared_data / "lasot_toolkit"
    results = lasot_results(toolkit, tmp_path / "near", LASOT_SEQUENCES[:2], 0.1)
    disk = tmp_path / "disk"
    done = on_small_disk(disk, 40, f"mkdir {disk / 'report'} && echo old > {disk / 'report/report.md'} && "
                                   f"chattracker report --benchmark lasot --annotations {toolkit} --results {results} "
                                   f"--out {disk / 'report'} --no-attributes; echo rc=$?; ls -A {disk} {disk / 'report'}; "
                                   f"cat {disk / 'report/report.md'}")
    err = done.stderr.decode().strip().splitlines()
    assert err[-1] == (f"chattracker: error: cannot write the results into {disk / 'report'}: no space left on device "
                       "(nothing was written there)"), err
    assert [line for line in err if "error" in line] == err[-1:]  # the rest: the missing-results warning
    # no staging folder or lone success.png left; the earlier report.md untouched
    assert done.stdout.decode().split() == ["rc=2", f"{disk}:", "report", f"{disk / 'report'}:", "report.md", "old"]


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(shared_data, tmp_path):
    # Crossing's 120 frames five times over (links): a run long enough to be killed in the middle on a busy machine
    frames = tmp_path / "long"
    frames.mkdir()
    originals = sorted((shared_data / "otb_crossing/Crossing/img").glob("*.jpg"))
    for index in range(5 * len(originals)):
        (frames / f"{index + 1:05d}.jpg").symlink_to(originals[index % len(originals)])
    out = tmp_path / "runs" / "crossing"
    command = [str(BIN / "chattracker"), "track", str(frames), "--box", "205,151,17,50", "--tracker", "csrt",
               "--out", str(out), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.parent.glob(".crossing.partial-*/.annotated*")) and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = list(out.parent.glob(".crossing.partial-*"))
    assert len(left) == 1 and f".partial-{process.pid}-" in left[0].name  # kill -9 leaves it, naming the pid
    live = out.parent / f".other.partial-{os.getpid()}-abcd"  # a run still going (this process): kept
    live.mkdir()
    done = subprocess.run(command + ["--max-frames", "3"], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert sorted(p.name for p in out.parent.iterdir()) == [live.name, "crossing"]
