"""GOT-10k, TrackingNet and UAV123 layouts built from real frames: loading, running, packing
submissions that pass the format checks (and catching the usual mistakes), scoring absent frames."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from chattracker.cli import main as cli_main
from chattracker_eval.datasets import load_dataset
from chattracker_eval.submission import check_submission

pytestmark = [pytest.mark.shared]

FRAMES = {"Crossing": 22, "Deer": 18}


def real(data: Path, name: str) -> tuple[list[Path], np.ndarray]:
    folder = data / ("otb_crossing/Crossing" if name == "Crossing" else "sot_dev/OTB_Deer")
    annotation = folder / ("groundtruth_rect.txt" if name == "Crossing" else "groundtruth.txt")
    boxes = np.loadtxt(annotation.read_text().replace("\t", ",").splitlines(), delimiter=",")
    count = FRAMES[name]
    return sorted((folder / "img").glob("*.jpg"))[:count], boxes[:count]


def link_frames(files: list[Path], folder: Path, pattern: str, first: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(files):
        os.symlink(path, folder / pattern.format(first + index))


def write_boxes(path: Path, boxes: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(",".join(f"{v:g}" for v in row) + "\n" for row in np.atleast_2d(boxes)))


@pytest.fixture()
def got10k_root(shared_data: Path, tmp_path: Path) -> Path:
    """``GOT-10k/{val,test}`` with two real sequences each (frames linked, as the archive names them)."""
    root = tmp_path / "GOT-10k"
    for split in ("val", "test"):
        names = [f"GOT-10k_{split.capitalize()}_{index:06d}" for index in (1, 2)]
        for name, source in zip(names, FRAMES):
            files, boxes = real(shared_data, source)
            folder = root / split / name
            link_frames(files, folder, "{:08d}.jpg", 1)
            write_boxes(folder / "groundtruth.txt", boxes if split == "val" else boxes[:1])
            if split == "val":
                absent = np.zeros(len(boxes), int)
                absent[8:11] = 1
                (folder / "absence.label").write_text("".join(f"{v}\n" for v in absent))
                (folder / "cover.label").write_text("".join(f"{0 if v else 8}\n" for v in absent))
                (folder / "cut_by_image.label").write_text("0\n" * len(boxes))
                (folder / "meta_info.ini").write_text("[METAINFO]\nresolution: (360, 240)\n")
        (root / split / "list.txt").write_text("\n".join(names) + "\n")
    return root


def chattracker(*args: str) -> subprocess.CompletedProcess:
    """The CLI in this process (a subprocess per call costs seconds of imports), output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_got10k_loads_runs_and_packs_a_submission_that_passes_the_checks(got10k_root: Path, tmp_path: Path) -> None:
    val = load_dataset("got10k", got10k_root)  # the dataset root means the val split
    assert val.sequences.names() == ["GOT-10k_Val_000001", "GOT-10k_Val_000002"]
    assert [int(s.absent.sum()) for s in val] == [3, 3]
    test = load_dataset("got10k", got10k_root / "test")
    assert [len(s) for s in test] == [22, 18]  # one row per image, NaN after the first box
    assert np.isnan(test.sequences[0].ground_truth[1:]).all() and len(test.sequences[0].frames) == 22

    results = tmp_path / "results"
    ran = chattracker("eval", "--dataset", "got10k", "--root", str(got10k_root / "test"), "--tracker", "csrt",
                      "--results", str(results), "--no-progress")
    assert ran.returncode == 0, ran.stderr
    refused = chattracker("score", "--benchmark", "got10k", "--annotations", str(got10k_root / "test"),
                          "--results", str(results))
    assert refused.returncode == 2 and "no ground truth after its first box" in refused.stderr

    submission = tmp_path / "got10k.zip"
    packed = chattracker("pack", "--format", "got10k", "--root", str(got10k_root / "test"), "--results", str(results),
                         "--out", str(submission))
    assert packed.returncode == 0, packed.stderr
    with zipfile.ZipFile(submission) as archive:
        assert sorted(archive.namelist()) == sorted(
            f"{name}/{name}_{suffix}.txt" for name in test.sequences.names() for suffix in ("001", "time"))
        name = "GOT-10k_Test_000001"
        rows = [line.split(",") for line in archive.read(f"{name}/{name}_001.txt").decode().splitlines()]
        ours = np.loadtxt(results / f"{name}.txt", delimiter=",")
        np.testing.assert_array_equal(np.array(rows, dtype=float), ours)
        assert len(archive.read(f"{name}/{name}_time.txt").decode().splitlines()) == 22
    assert chattracker("pack", "--format", "got10k", "--root", str(got10k_root / "test"),
                       "--check", str(submission)).returncode == 0

    # Three runs (the protocol for stochastic trackers) become _001.._003 and three time columns.
    packed3 = chattracker("pack", "--format", "got10k", "--root", str(got10k_root / "test"), "--results", str(results),
                          "--results", str(results), "--results", str(results), "--out", str(tmp_path / "three.zip"))
    assert packed3.returncode == 0, packed3.stderr
    with zipfile.ZipFile(tmp_path / "three.zip") as archive:
        assert f"{name}/{name}_003.txt" in archive.namelist()
        assert all(len(line.split(",")) == 3 for line in archive.read(f"{name}/{name}_time.txt").decode().splitlines())


def test_got10k_toolkit_output_passes_our_check_and_reads_our_files(got10k_root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("got10k")
    from got10k.experiments import ExperimentGOT10k

    from chattracker.toolkits.got10k import Got10kTracker

    monkeypatch.setattr("time.sleep", lambda seconds: None)  # its 2 s pause before a test-split run
    monkeypatch.chdir(tmp_path)  # report() changes directory while zipping; come back to a known place
    experiment = ExperimentGOT10k(str(got10k_root), subset="test", result_dir=str(tmp_path / "g"),
                                  report_dir=str(tmp_path / "r"))
    tracker = Got10kTracker("csrt")  # not declared deterministic: got10k runs every sequence 3 times
    experiment.run(tracker)
    experiment.report([tracker.name])
    their_zip = tmp_path / "g" / "GOT-10k" / f"{tracker.name}.zip"
    test = load_dataset("got10k", got10k_root / "test")
    assert check_submission(their_zip, "got10k", test) == []

    # got10k's own val evaluation reads what `chattracker pack` writes.
    results = tmp_path / "ours"
    assert chattracker("eval", "--dataset", "got10k", "--root", str(got10k_root), "--tracker", "csrt",
                       "--results", str(results), "--no-progress").returncode == 0
    packed = chattracker("pack", "--format", "got10k", "--root", str(got10k_root / "val"), "--results", str(results),
                         "--out", str(tmp_path / "val.zip"))
    assert packed.returncode == 0, packed.stderr
    with zipfile.ZipFile(tmp_path / "val.zip") as archive:
        archive.extractall(tmp_path / "v" / "GOT-10k" / "ours")
    performance = ExperimentGOT10k(str(got10k_root), subset="val", result_dir=str(tmp_path / "v"),
                                   report_dir=str(tmp_path / "vr")).report(["ours"])
    assert sorted(performance["ours"]["seq_wise"]) == load_dataset("got10k", got10k_root).sequences.names()
    assert 0.3 < performance["ours"]["overall"]["ao"] <= 1.0
    scored = chattracker("score", "--benchmark", "got10k", "--annotations", str(got10k_root), "--results",
                         str(results), "--json")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["num_sequences"] == 2


@pytest.fixture()
def trackingnet_root(shared_data: Path, tmp_path: Path) -> Path:
    """``TrackingNet/TEST`` (first box only) and ``TRAIN_0`` (full ground truth), frames from 0.jpg."""
    root = tmp_path / "TrackingNet"
    for split in ("TEST", "TRAIN_0"):
        for name in FRAMES:
            files, boxes = real(shared_data, name)
            link_frames(files, root / split / "frames" / name, "{}.jpg", 0)
            write_boxes(root / split / "anno" / f"{name}.txt", boxes if split == "TRAIN_0" else boxes[:1])
    return root


def test_trackingnet_submission_and_the_mistakes_the_check_catches(trackingnet_root: Path, tmp_path: Path) -> None:
    test = load_dataset("trackingnet", trackingnet_root)  # the dataset root means TEST
    assert [len(s) for s in test] == [22, 18] and test.sequences[0].frames[1].name == "1.jpg"
    results = tmp_path / "results"
    assert chattracker("eval", "--dataset", "trackingnet", "--root", str(trackingnet_root), "--tracker", "csrt",
                       "--results", str(results), "--no-progress").returncode == 0
    submission = tmp_path / "trackingnet.zip"
    packed = chattracker("pack", "--format", "trackingnet", "--root", str(trackingnet_root), "--results", str(results),
                         "--out", str(submission))
    assert packed.returncode == 0, packed.stderr
    with zipfile.ZipFile(submission) as archive:
        assert sorted(archive.namelist()) == ["Crossing.txt", "Deer.txt"]

    def broken(name: str, members: dict[str, str]) -> list[str]:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as archive:
            for member, text in members.items():
                archive.writestr(member, text)
        return check_submission(path, "trackingnet", test)

    good = {f"{n}.txt": (results / f"{n}.txt").read_text() for n in FRAMES}
    spaces = {**good, "Deer.txt": good["Deer.txt"].replace(",", " ")}
    assert any("space/tab-separated" in p for p in broken("spaces.zip", spaces))
    assert any("1 file(s) missing, e.g. Deer.txt" in p for p in broken("missing.zip", {"Crossing.txt": good["Crossing.txt"]}))
    nested = broken("nested.zip", {f"results/{k}": v for k, v in good.items()})
    assert any("must sit at the top of the zip" in p for p in nested)
    short = {**good, "Deer.txt": "".join(good["Deer.txt"].splitlines(keepends=True)[:-1])}
    assert any("17 line(s), the sequence has 18 frame(s)" in p for p in broken("short.zip", short))
    nan = {**good, "Deer.txt": good["Deer.txt"].replace(good["Deer.txt"].splitlines()[3], "nan,nan,nan,nan")}
    assert any("line 4: 'nan' is not a finite number" in p for p in broken("nan.zip", nan))
    assert broken("good.zip", good) == []

    # pack refuses results with a row missing, and writes nothing (space-separated ones it rewrites with commas)
    bad_results = tmp_path / "bad"
    bad_results.mkdir()
    for n in FRAMES:
        lines = (results / f"{n}.txt").read_text().replace(",", " ").splitlines(keepends=True)
        (bad_results / f"{n}.txt").write_text("".join(lines[:-1] if n == "Deer" else lines))
    refused = chattracker("pack", "--format", "trackingnet", "--root", str(trackingnet_root), "--results",
                          str(bad_results), "--out", str(tmp_path / "refused.zip"))
    assert refused.returncode == 2 and refused.stderr.startswith("chattracker: error:")
    assert "Deer.txt has 17 line(s) but the sequence has 18 frame(s)" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "refused.zip").exists() and not list(tmp_path.glob(".refused.zip.*"))
    checked = chattracker("pack", "--format", "trackingnet", "--root", str(trackingnet_root), "--check",
                          str(tmp_path / "spaces.zip"))
    assert checked.returncode == 2 and "space/tab-separated" in checked.stdout

    # the training chunks have full ground truth and score like any benchmark
    train = tmp_path / "train_results"
    assert chattracker("eval", "--dataset", "trackingnet", "--root", str(trackingnet_root / "TRAIN_0"), "--tracker",
                       "csrt", "--results", str(train), "--no-progress").returncode == 0
    scored = chattracker("score", "--benchmark", "trackingnet", "--annotations", str(trackingnet_root / "TRAIN_0"),
                         "--results", str(train), "--json")
    assert scored.returncode == 0 and json.loads(scored.stdout)["num_sequences"] == 2


def test_uav123_10fps_layout_and_absent_frames(shared_data: Path, tmp_path: Path, capsys) -> None:
    source = shared_data / "sot_dev" / "UAV123-10fps_group2_2"
    root = tmp_path / "UAV123_10fps"
    (root / "anno" / "UAV123_10fps").mkdir(parents=True)
    (root / "anno" / "UAV123_10fps" / "group2_2.txt").write_text((source / "groundtruth.txt").read_text())
    link_frames(sorted((source / "img").glob("*.jpg")), root / "data_seq" / "UAV123_10fps" / "group2", "{:06d}.jpg", 303)
    sequence = load_dataset("uav123_10fps", root).sequences["group2_2"]
    assert len(sequence) == 289 and int(sequence.absent.sum()) == 5
    assert (sequence.frames[0].name, sequence.frames[-1].name) == ("000303.jpg", "000591.jpg")

    # The ground truth, its last box held through the 5 NaN frames (what a tracker that never loses
    # the target would write): absent frames are failures over all 289 frames.
    truth = sequence.ground_truth.copy()
    for index in range(1, len(truth)):
        if np.isnan(truth[index]).any():
            truth[index] = truth[index - 1]
    results = tmp_path / "results"
    write_boxes(results / "group2_2.txt", truth)
    (results / "UAV123-10fps_group2_2.txt").write_text((results / "group2_2.txt").read_text())
    scores = {}
    for benchmark, annotations, protocol in (("uav123_10fps", root, "official"), ("uav123_10fps", root, "pytracking"),
                                             ("folder", source, "official")):
        assert cli_main(["score", "--benchmark", benchmark, "--annotations", str(annotations), "--results",
                         str(results), "--protocol", protocol, "--json"]) == 0
        scores[benchmark, protocol] = json.loads(capsys.readouterr().out)
    present = 284 / 289
    official = scores["uav123_10fps", "official"]
    assert official["auc"] == pytest.approx(100 * 20 / 21 * present, abs=1e-9)
    assert official["precision"] == pytest.approx(100 * present, abs=1e-9)
    assert official["norm_precision"] == pytest.approx(100 * present, abs=1e-9)
    # pytracking ('uav'): NaN rows are invalid frames, failing success and precision alike, but they
    # pass normalized precision (its error is set to -1 there), so P_norm is 100.
    pytracking = scores["uav123_10fps", "pytracking"]
    assert pytracking["auc"] == pytest.approx(official["auc"], abs=1e-4)
    assert pytracking["precision"] == pytest.approx(official["precision"], abs=1e-4)
    assert pytracking["norm_precision"] == pytest.approx(100.0, abs=1e-4)
    assert scores["folder", "official"]["auc"] == pytest.approx(official["auc"], abs=1e-9)
