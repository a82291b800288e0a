"""``bench/fusion.py``, the benchmark that judges the fusion module, run end to end on short real sequences:
its figures are the official scores of the result files it writes, its round analysis adds up, any dataset
the eval loaders read works (``folder`` included), and bad input is one ``bench: error:`` line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chattracker_eval.datasets import load_dataset
from chattracker_eval.protocols import OfficialProtocol, score_sequence
from chattracker_eval.scoring import read_result
from tests.conftest import REPO_ROOT

BENCH = REPO_ROOT / "bench" / "fusion.py"


def run_bench(data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHATTRACKER_SHARED_DATA": str(data), "CHATTRACKER_WEIGHTS": str(data)}
    return subprocess.run([sys.executable, str(BENCH), "--root", str(data), "--no-progress", *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=900)


def test_the_development_bench_reports_the_official_scores_of_its_own_result_files(shared_data, tmp_path):
    out, report_path = tmp_path / "runs", tmp_path / "report.json"
    done = run_bench(shared_data, "--sequences", "OTB_Football1", "--out", str(out), "--json", str(report_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert report["protocol"] == "official" and report["base"] == "nanotrack_v2"
    row = report["sequences"]["OTB_Football1"]
    assert any(line.startswith("OTB_Football1 ") for line in done.stdout.splitlines())  # the table comes first
    # NanoTrack v2 is deterministic across machines: the figure of sot_dev/README.md and the README's table.
    assert round(row["base"]["auc"], 2) == 75.93
    sequence = load_dataset("fusion_dev", shared_data).sequences.select(["OTB_Football1"])[0]
    for kind in ("base", "chattracker", "oracle"):
        written = out / "nanotrack_v2" / kind / "OTB_Football1.txt"
        curves = score_sequence(OfficialProtocol(), read_result(written), sequence.ground_truth, sequence.absent)
        assert row[kind]["auc"] == pytest.approx(100 * curves.auc)
        assert row[kind]["fps"] > 0
    # Every grounding round is counted once, by the kind of its decision; recall is a share of rounds.
    assert sum(d["count"] for d in row["decisions"].values()) == row["grounding_rounds"] > 0
    assert 0.0 <= row["proposal_recall"] <= 1.0
    assert all(0.0 <= share <= row["proposal_recall"] + 1e-9 for share in row["recall_by_source"].values())
    assert row["fps_ratio"] == pytest.approx(row["chattracker"]["fps"] / row["base"]["fps"])
    assert row["delta_auc"] == pytest.approx(row["chattracker"]["auc"] - row["base"]["auc"])
    assert report["mean"]["worst_delta"] == pytest.approx(row["delta_auc"])
    oracle_up = row["oracle"]["auc"] - row["base"]["auc"]
    assert report["mean"]["oracle_delta_auc"] == pytest.approx(oracle_up, abs=1e-6)  # one sequence: its own
    assert report["mean"]["oracle_sequences_up_2"] == int(oracle_up >= 2.0)
    assert any(line.startswith("oracle (best candidate every round)") for line in done.stdout.splitlines())
    assert set(report["done_when"]) == {"mean_auc_up_2", "up_1_without_best", "no_sequence_down_1", "fps_ratio_0.6"}
    assert set(row["switches"]) == {"made", "undone", "helped", "hurt"}
    assert row["base"]["area_ratio"] > 0 and row["chattracker"]["area_ratio"] > 0
    # A speed ratio is read with the machine it was measured on.
    assert report["machine"]["cpus"] >= 1 and report["machine"]["onnxruntime"] and report["machine"]["cpu"]
    assert row["descriptions"][0]["why"] == "the first frame" and row["descriptions"][0]["foreground"]


def test_any_dataset_and_base_tracker_and_one_error_line_for_bad_input(shared_data, tmp_path):
    report_path = tmp_path / "folder.json"
    done = run_bench(shared_data / "sot_dev", "--dataset", "folder", "--sequences", "OTB_Deer", "--base", "csrt",
                     "--no-oracle", "--out", str(tmp_path / "runs"), "--json", str(report_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert report["dataset"] == "folder" and report["base"] == "csrt"
    assert set(report["sequences"]) == {"OTB_Deer"} and "oracle" not in report["sequences"]["OTB_Deer"]
    assert not (tmp_path / "runs" / "csrt" / "oracle").exists()

    missing = tmp_path / "missing.json"
    bad = run_bench(shared_data, "--sequences", "no_such_sequence", "--json", str(missing), "--out", str(tmp_path / "r2"))
    errors = [line for line in bad.stderr.splitlines() if line.startswith("bench: error:")]
    assert bad.returncode == 2 and len(errors) == 1 and "no_such_sequence" in errors[0]
    assert not missing.exists()


def test_cross_validation_fits_each_fold_without_the_sequences_it_reports(shared_data, tmp_path):
    """``--folds``: every sequence is reported with a model file whose manifest names the sequences it was
    trained on, and the sequence itself is never among them; the collected rounds carry one feature row
    and one IoU per candidate."""
    from chattracker.fusion.features import FEATURES
    from chattracker.fusion.target_model import load_model, manifest_path

    out, report_path = tmp_path / "runs", tmp_path / "cv.json"
    names = ["Crossing", "OTB_Deer", "OTB_Football1"]
    done = run_bench(shared_data, "--folds", "0", "--sequences", ",".join(names), "--no-oracle", "--out", str(out),
                     "--json", str(report_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert report["folds"] == 0 and set(report["sequences"]) == set(names)
    for name, row in report["sequences"].items():
        model_file = out / "nanotrack_v2" / "folds" / f"fold{row['fold']['index']:02d}.json"
        trained_on = json.loads(manifest_path(model_file).read_text())["trained_on"]
        assert name not in trained_on and sorted(trained_on) == sorted(set(names) - {name})
        assert load_model(model_file).switch_cost == row["fold"]["switch_cost"]
        collected = json.loads((out / "nanotrack_v2" / "collect" / f"{name}.json").read_text())["rounds"]
        assert collected and all(len(c["features"]) == len(FEATURES) and 0.0 <= c["iou"] <= 1.0
                                 for r in collected for c in r["candidates"])
    assert report["mean"]["best_sequence"] in names and "delta_auc_without_best" in report["mean"]
    bad = run_bench(shared_data, "--folds", "-1", "--sequences", "OTB_Deer", "--out", str(tmp_path / "r3"))
    assert bad.returncode != 0 and "bench: error: --folds must be >= 0" in bad.stderr


def test_the_correction_bound_reinitialises_on_the_truth_and_is_the_base_without_corrections(shared_data, tmp_path):
    script = REPO_ROOT / "bench" / "correction_bound.py"
    env = {**os.environ, "CHATTRACKER_SHARED_DATA": str(shared_data), "CHATTRACKER_WEIGHTS": str(shared_data)}

    def bound(every: int, *options: str) -> dict:
        path = tmp_path / f"bound_{every}{''.join(options)}.json"
        done = subprocess.run([sys.executable, str(script), "--root", str(shared_data), "--sequences", "OTB_Deer",
                               "--every", str(every), "--no-progress", "--json", str(path), *options],
                              capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600)
        assert done.returncode == 0, done.stderr
        return json.loads(path.read_text())["sequences"]["OTB_Deer"]

    never, every_10 = bound(1000), bound(10)
    assert never["corrections"] == 0 and never["bound_auc"] == never["base_auc"]  # the same tracker, untouched
    assert round(every_10["base_auc"], 2) == 65.79  # NanoTrack v2 alone, as in the README's table
    assert every_10["corrections"] == 7  # frames 10, 20, ..., 70 of 71
    assert every_10["bound_auc"] > every_10["base_auc"] + 2.0  # measured 73.6: the truth every 10 frames helps
    kept = bound(10, "--keep-template")  # the box moved to the truth, the first template kept
    assert kept["corrections"] == 7 and kept["bound_auc"] > kept["base_auc"] + 2.0  # measured 73.2
    own = bound(10, "--keep-template", "--to-own-box")  # corrects nothing: re-initialising alone
    # With the template really kept, seven re-initialisations on its own boxes leave NanoTrack where it was
    # (measured 65.93 against 65.79; pasting the template with replicated borders instead of the mean
    # colour NanoTrack pads with gave 74.65: a changed template, not a kept one).
    assert own["corrections"] == 7 and abs(own["bound_auc"] - own["base_auc"]) < 1.0


def test_base_loss_counts_lost_frames_and_the_scores_that_said_so(shared_data, tmp_path):
    """bench/base_loss.py on OTB Toy around CSRT: CSRT's failure flag (score 0) covers most of the frames
    it has lost the toy in (committed run: 119 lost, 119 of them flagged); NanoTrack v2's score never
    falls under 0.5 there (9 lost, none flagged)."""
    script = REPO_ROOT / "bench" / "base_loss.py"
    env = {**os.environ, "CHATTRACKER_SHARED_DATA": str(shared_data), "CHATTRACKER_WEIGHTS": str(shared_data)}

    def counts(base: str) -> dict:
        path = tmp_path / f"loss_{base}.json"
        done = subprocess.run([sys.executable, str(script), "--root", str(shared_data), "--sequences", "OTB_Toy",
                               "--base", base, "--no-progress", "--json", str(path)],
                              capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600)
        assert done.returncode == 0, done.stderr
        return json.loads(path.read_text())["sequences"]["OTB_Toy"]

    csrt, nanotrack = counts("csrt"), counts("nanotrack_v2")
    assert csrt["visible_frames"] == nanotrack["visible_frames"] == 270
    assert csrt["lost"] > 50 and csrt["lost_with_low_score"] >= 0.8 * csrt["lost"]
    assert nanotrack["lost"] == 9 and nanotrack["low_score"] == 0  # NanoTrack's boxes are the same on every machine
    bad = subprocess.run([sys.executable, str(script), "--lost-iou", "0"], capture_output=True, text=True,
                         cwd=REPO_ROOT, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["bench: error: --lost-iou must be in (0, 1], got 0.0"]


def test_init_shift_runs_every_start_and_the_unshifted_one_is_the_plain_run(shared_data, tmp_path):
    """bench/init_shift.py --base-only on OTB Deer: seven starts (the first box and six one-pixel changes),
    the unshifted one NanoTrack v2's own 65.79 of the README's table, and a one-pixel start moves the AUC
    (committed run: -0.54 to +2.68): the spread a per-sequence gain of 2 is read against."""
    script = REPO_ROOT / "bench" / "init_shift.py"
    env = {**os.environ, "CHATTRACKER_SHARED_DATA": str(shared_data), "CHATTRACKER_WEIGHTS": str(shared_data)}
    path = tmp_path / "shift.json"
    done = subprocess.run([sys.executable, str(script), "--root", str(shared_data), "--sequences", "OTB_Deer",
                           "--base-only", "--no-progress", "--json", str(path)],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(path.read_text())
    row = report["sequences"]["OTB_Deer"]
    assert list(row["base"]) == ["none", "x+1", "x-1", "y+1", "y-1", "w+1", "h+1"]
    assert round(row["base"]["none"], 2) == 65.79
    assert len({round(v, 4) for v in row["base"].values()}) > 1  # a pixel changes the run
    assert row["base_move_max"] >= 2.0 and report["sequences_moved_2_by_a_pixel"] == 1
    # With the wrapper: the same seven starts, each run by the fusion bench's own interleaved runner.
    wrapped_path = tmp_path / "shift_wrapped.json"
    wrapped = subprocess.run([sys.executable, str(script), "--root", str(shared_data), "--sequences", "OTB_Deer",
                              "--no-progress", "--json", str(wrapped_path)],
                             capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600)
    assert wrapped.returncode == 0, wrapped.stderr
    both = json.loads(wrapped_path.read_text())["sequences"]["OTB_Deer"]
    assert list(both["chattracker"]) == list(both["base"]) and round(both["base"]["none"], 2) == 65.79
    assert both["delta"]["none"] == pytest.approx(both["chattracker"]["none"] - both["base"]["none"])
    bad = subprocess.run([sys.executable, str(script), "--base-only", "--set", "ground_every=5"], capture_output=True,
                         text=True, cwd=REPO_ROOT, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "bench: error: --set changes the wrapper's settings, and --base-only runs no wrapper"]


def test_the_bundled_int8_osnet_is_rebuilt_bit_for_bit_by_its_script(shared_data, tmp_path):
    """bench/quantize_osnet.py builds the int8 OSNet the wrapper runs from the released float32 file and the
    tune half's ground-truth crops; the file it writes is the bundled one, byte for byte, and the report says
    what it costs in agreement (committed run: cosine 0.974 on average, 0.898 at the least, on the held-out
    half) and time. A missing --out is one usage error."""
    from chattracker.weights import bundled_dir, get_weight, sha256_of

    script = REPO_ROOT / "bench" / "quantize_osnet.py"
    env = {**os.environ, "CHATTRACKER_SHARED_DATA": str(shared_data), "CHATTRACKER_WEIGHTS": str(shared_data)}
    out = tmp_path / "osnet_int8.onnx"
    done = subprocess.run([sys.executable, str(script), "--root", str(shared_data), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    weight = get_weight("osnet_reid_int8")
    assert report["sha256"] == sha256_of(out) == weight.sha256 == sha256_of(bundled_dir() / "osnet_reid" / weight.filename)
    assert report["calibration_crops"] == 64 and report["cosine_float32_int8"]["mean"] > 0.95
    assert not list(tmp_path.glob("*.partial"))
    bad = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120)
    assert bad.returncode == 2 and "--out" in bad.stderr
