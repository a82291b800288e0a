"""Reference values of DESIGN.md section 5 on the real LaSOT/TNL2K toolkit annotations, and the loaders
on the real dataset layouts in ../shared/data (plus small layouts built from real files)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from chattracker.cli import main
from chattracker.errors import InputError
from chattracker.results import write_boxes
from chattracker_eval.datasets import load_dataset
from chattracker_eval.protocols import OfficialProtocol, PytrackingProtocol, score_sequence
from chattracker_eval.scoring import score_boxes


def held_ground_truth(sequence) -> np.ndarray:
    """Ground truth with the last box held through absent frames (the reference 'tracker')."""
    boxes = sequence.ground_truth.copy()
    for i in range(1, len(boxes)):
        if sequence.absent[i]:
            boxes[i] = boxes[i - 1]
    return boxes


@pytest.fixture(scope="module")
def lasot(shared_data):
    return load_dataset("lasot", shared_data / "lasot_toolkit")


@pytest.fixture(scope="module")
def tnl2k(shared_data):
    return load_dataset("tnl2k", shared_data / "tnl2k_toolkit")


@pytest.fixture(scope="module")
def lasot_held(lasot):
    return {sequence.name: held_ground_truth(sequence) for sequence in lasot}


def test_lasot_toolkit_layout(lasot):
    assert len(lasot) == 280 and lasot.sequences[0].name == "airplane-1"
    airplane = lasot.sequences["airplane-1"]
    assert len(airplane) == 2788 and airplane.language == "white airplane landing on ground"
    assert len(airplane.attributes) == 14 and airplane.attributes["POC"] and not airplane.attributes["IV"]
    # absent frames come from the files, not from boxes: 8,060 of the 18,346 carry a real box (DESIGN.md section 5)
    assert sum(int(s.absent.sum()) for s in lasot) == 18346
    assert sum(int((s.absent & (s.ground_truth[:, 2:] > 0).all(axis=1)).sum()) for s in lasot) == 8060
    with pytest.raises(InputError, match="annotation-only"):
        airplane.frames


def test_lasot_reference_values(lasot, lasot_held):
    report = score_boxes(lasot, lasot_held, "official").to_json()
    assert report["protocol"] == "official" and report["benchmark"] == "lasot"
    assert report["num_sequences"] == 280 and report["missing"] == []
    assert _rounded(report) == {"auc": 92.74, "precision": 97.38, "norm_precision": 97.38}
    assert len(report["sequences"]) == 280


def test_lasot_pytracking_protocol_agrees_with_official(lasot, lasot_held):
    with pytest.raises(InputError, match="tiger-6: has NaN or negative sizes"):
        score_boxes(lasot, lasot_held, "pytracking")   # LaSOT's own boxes include negative sizes
    clipped = {name: np.column_stack([b[:, :2], np.clip(b[:, 2:], 0, None)]) for name, b in lasot_held.items()}
    official = score_boxes(lasot, clipped, "official")
    python = score_boxes(lasot, clipped, "pytracking")
    assert python.protocol == "pytracking" and python.num_sequences == 280
    assert abs(python.average.curves.auc - official.average.curves.auc) < 1e-4
    assert len(official.attributes) == 14 and {a.short for a in official.attributes} >= {"FOC", "OV", "ARC"}


def test_tnl2k_toolkit_layout_and_reference_values(tnl2k, caplog):
    assert len(tnl2k) == 700 and len(tnl2k.attribute_names) == 17
    assert all(len(s.attributes) == 17 for s in tnl2k)
    # absent flags = all-zero ground-truth rows (the loader warns when the file disagrees; none do)
    assert all(np.array_equal(s.absent, (s.ground_truth == 0).all(axis=1)) for s in tnl2k)
    assert tnl2k.sequences["advSamp_monitor_bikeyellow"].absent.shape == (929,)   # 930-line absent file cut to N
    official = OfficialProtocol()
    per_sequence = [score_sequence(official, held_ground_truth(s), s.ground_truth, s.absent) for s in tnl2k]
    summary = official.average(per_sequence).curves.summary()
    assert _rounded(summary) == {"auc": 84.66, "precision": 91.72, "norm_precision": 91.72}
    # pytracking-style scoring of the same boxes (the README's figures, DESIGN.md section 5: about +2 AUC and +8
    # P_norm). Protects the pytracking rules: invalid frames fail IoU, fail precision (center error inf) and pass
    # normalized precision; with invalid frames passing precision, P would read 100.0 here.
    python = PytrackingProtocol("tnl2k")
    python_summary = python.average([score_sequence(python, held_ground_truth(s), s.ground_truth, None)
                                     for s in tnl2k]).curves.summary()
    assert _rounded(python_summary) == {"auc": 87.35, "precision": 91.71, "norm_precision": 100.0}


def _rounded(summary: dict) -> dict:
    """The README's two-decimal figures of a summary."""
    return {key: round(summary[key], 2) for key in ("auc", "precision", "norm_precision")}


def test_tnl2k_first_frame_boxes_on_the_border(tnl2k):
    touching = [s for s in tnl2k if (s.ground_truth[0] <= 0).any()]
    assert len(touching) == 15
    assert all((s.ground_truth[0, :2] == 0).any() and (s.ground_truth[0, 2:] > 0).all() for s in touching)
    official, python = OfficialProtocol(), PytrackingProtocol("tnl2k")
    for sequence in touching:
        gt = sequence.ground_truth
        e = official.frame_errors(gt, gt, sequence.absent)
        # the toolkit treats a zero coordinate as invalid: frame 1 fails success, passes precision
        assert e.iou[0] == -1 and e.center[0] == -1
        kept = gt[~sequence.absent]
        valid = (kept > 0).all(axis=1)
        curves = score_sequence(official, gt, gt, sequence.absent)
        assert curves.success[0] == pytest.approx(valid.sum() / len(gt))
        assert python.frame_errors(gt, gt, None).iou[0] == 1.0     # pytracking only asks w, h > 0


def test_score_lists_missing_and_names_malformed_files(shared_data, tmp_path, capsys):
    # a six-video toolkit folder built from the real one (same layout, faster to load four times)
    real = shared_data / "tnl2k_toolkit"
    names = (real / "sequence_evaluation_config/TNL2K_testing_set.txt").read_text().split()[:6]
    toolkit = tmp_path / "toolkit"
    for sub in ("annos/gt_rect", "annos/absent", "annos/att", "sequence_evaluation_config"):
        (toolkit / sub).mkdir(parents=True)
    for name in names:
        for sub, suffix in (("gt_rect", ""), ("absent", ""), ("att", "_attribute")):
            shutil.copy(real / "annos" / sub / f"{name}{suffix}.txt", toolkit / "annos" / sub)
    (toolkit / "sequence_evaluation_config/TNL2K_testing_set.txt").write_text("\n".join(names))
    results = tmp_path / "res"
    results.mkdir()
    gt = load_dataset("tnl2k", toolkit).sequences
    assert load_dataset("tnl2k", toolkit / "annos").sequences.names() == names == gt.names()   # annos/ given
    for sequence in list(gt)[:3]:
        write_boxes(results / f"{sequence.name}.txt", sequence.ground_truth)
    second = tmp_path / "res2"
    shutil.copytree(results, second)
    args = ["score", "--benchmark", "tnl2k", "--annotations", str(toolkit), "--json"]
    assert main(args + ["--results", str(results), "--results", str(second), "--protocol", "pytracking"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert isinstance(reports, list) and len(reports) == 2
    assert set(reports[0]) == {"protocol", "init", "benchmark", "num_sequences", "missing", "auc", "precision",
                               "norm_precision", "sequences"}
    assert reports[0]["init"] == "box"  # no run.json: the ground truth started frame 1
    assert set(reports[0]["sequences"][list(gt)[0].name]) == {"auc", "precision", "norm_precision"}
    assert reports[0]["num_sequences"] == 3 and reports[0]["missing"] == names[3:]
    assert reports[0]["protocol"] == "pytracking"
    bad = results / f"{list(gt)[3].name}.txt"
    bad.write_text("1,2,3,4\nnot,a,box,here\n")
    assert main(args + ["--results", str(results)]) == 2
    assert f"{bad}: line 2" in capsys.readouterr().err
    short = results / f"{list(gt)[3].name}.txt"
    short.write_text("1,2,3,4\n")
    assert main(args + ["--results", str(results)]) == 2
    assert "has 1 rows but the ground truth has" in capsys.readouterr().err


def test_dataset_root_layouts(shared_data):
    clip = load_dataset("lasot", shared_data / "lasot_airplane-1_clip600")
    airplane = clip.sequences["airplane-1"]
    assert len(clip) == 1 and len(airplane) == 600 and len(airplane.frames) == 600
    assert airplane.frames[0].name == "00000001.jpg" and airplane.language == "white airplane landing on ground"
    assert not airplane.absent.any()
    woman = load_dataset("otb99_lang", shared_data / "otb_woman_lang").sequences["Woman"]
    assert woman.language == "woman next to the car" and len(woman.frames) == 597
    crossing = load_dataset("otb", shared_data / "otb_crossing").sequences["Crossing"]
    assert crossing.ground_truth[0].tolist() == [205, 151, 17, 50]                 # tab-delimited file
    otb = load_dataset("otb", shared_data / "otb100_annotations/OTB100.json")
    assert len(otb) == 100 and len(otb.sequences["David"]) == 471
    assert {"Jogging-1", "Jogging-2", "Human4-2"} <= set(otb.sequences.names())
    bag = load_dataset("vot", shared_data / "vot15_bag").sequences["bag"]
    corners = np.loadtxt(shared_data / "vot15_bag/bag/groundtruth.txt", delimiter=",")
    np.testing.assert_allclose(bag.ground_truth[:, 0], corners[:, 0::2].min(axis=1))
    np.testing.assert_allclose(bag.ground_truth[:, 2], corners[:, 0::2].max(axis=1) - corners[:, 0::2].min(axis=1))
    assert len(bag.frames) == 196


def test_built_layouts_and_warnings(shared_data, tmp_path, caplog):
    frames = sorted((shared_data / "otb_crossing/Crossing/img").glob("*.jpg"))
    gt_lines = (shared_data / "otb_crossing/Crossing/groundtruth_rect.txt").read_text().splitlines()
    # TNL2K root: odd frame names (natural sort), a non-image file, an empty language file, a test list
    root = tmp_path / "tnl2k"
    seq = root / "Fight_video_6-Done"
    (seq / "imgs").mkdir(parents=True)
    for i, frame in enumerate(frames[:12], start=1):
        shutil.copy(frame, seq / "imgs" / f"frame{i}.png" if i % 2 else seq / "imgs" / f"frame{i}.jpg")
    (seq / "imgs" / "Thumbs.db").write_text("x")
    (seq / "groundtruth.txt").write_text("\n".join(gt_lines[:11]).replace("\t", ",") + "\n")
    (seq / "language.txt").write_text("")
    (root / "TNL2K_testing_set.txt").write_text("Fight_video_6-Done\nnot_here\n")
    with caplog.at_level(logging.WARNING):
        bench = load_dataset("tnl2k", root)
        sequence = bench.sequences["Fight_video_6-Done"]
        assert [p.name for p in sequence.frames[:3]] == ["frame1.png", "frame2.jpg", "frame3.png"]
    messages = caplog.text
    assert "Fight_video_6-Done: empty language" in messages
    assert "not_here" in messages                                    # listed but absent: said, not hidden
    assert "Fight_video_6-Done: 12 image(s) but 11 ground-truth line(s)" in messages
    # OTB root with a two-target video and a later start frame
    otb = tmp_path / "otb"
    for name in ("Jogging", "David"):
        (otb / name / "img").mkdir(parents=True)
    for i, frame in enumerate(frames[:5], start=1):
        shutil.copy(frame, otb / "Jogging" / "img" / f"{i:04d}.jpg")
        shutil.copy(frame, otb / "David" / "img" / f"{i + 297:04d}.jpg")
    for suffix in (".1", ".2"):
        (otb / "Jogging" / f"groundtruth_rect{suffix}.txt").write_text("\n".join(gt_lines[:5]) + "\n")
    (otb / "David" / "groundtruth_rect.txt").write_text("\n".join(gt_lines[:3]) + "\n")
    (otb / "OTB_query_test").mkdir()
    (otb / "OTB_query_test" / "Jogging-1.txt").write_text("a woman jogging on the left\n")
    loaded = load_dataset("otb", otb)
    assert loaded.sequences.names() == ["David", "Jogging-1", "Jogging-2"]
    assert [p.name for p in loaded.sequences["David"].frames] == ["0300.jpg", "0301.jpg", "0302.jpg"]
    lang = load_dataset("otb99_lang", otb)
    assert lang.sequences.names() == ["Jogging-1"] and lang.sequences[0].language == "a woman jogging on the left"
