"""`chattracker audit` on real frames: deliberately wrong sentences are flagged with the reason and a rewrite
that grounds the target; correct ones pass."""

from __future__ import annotations

import json

import pytest
import yaml

from chattracker.audit import sample_frames
from chattracker.cli import main
from tests.helpers import assert_one_error_line

import numpy as np


def _audit(shared_data, tmp_path, sentence: str | None, capsys, dataset="otb", folder="otb_crossing", extra=()):
    out = tmp_path / "audit"
    args = ["audit", "--dataset", dataset, "--root", str(shared_data / folder), "--out", str(out), "--no-progress", *extra]
    if sentence is not None:
        (tmp_path / "s.yaml").write_text(f"Crossing: {sentence}\n")
        args += ["--sentences", str(tmp_path / "s.yaml")]
    assert main(args) == 0
    return out, capsys.readouterr().out


@pytest.mark.parametrize("sentence, reason", [
    ("person in red on the left", "the sentence fits a distractor better"),
    ("white dog crossing the street", "nothing of class dog found; the detector sees person"),
])
def test_wrong_sentences_are_flagged_with_a_rewrite_that_grounds_the_target(shared_data, tmp_path, capsys,
                                                                           sentence, reason):
    out, printed = _audit(shared_data, tmp_path, sentence, capsys)
    record = json.loads((out / "Crossing.json").read_text())
    assert record["flagged"] and reason in record["reason"] and record["frames"][0]["verdict"] != "hit"
    assert record["rewrite"] and record["rewrite_grounds"] is True and record["rewrite_iou"] >= 0.5
    assert "FLAG" in printed and "rewrite:" in printed and "flagged 1" in printed
    assert (out / "Crossing.png").stat().st_size > 10_000
    assert json.loads((out / "summary.json").read_text())["flagged"] == 1
    assert yaml.safe_load((out / "rewrites.yaml").read_text()) == {"Crossing": record["rewrite"]}


def test_correct_sentences_pass(shared_data, tmp_path, capsys):
    out, printed = _audit(shared_data, tmp_path, "man in black walking across the road", capsys)
    record = json.loads((out / "Crossing.json").read_text())
    assert not record["flagged"] and record["hits"] == record["frames_checked"] == 4 and not (out / "Crossing.png").exists()
    out, printed = _audit(shared_data, tmp_path / "w", None, capsys, folder="otb_woman_lang")
    assert "Woman                    ok" in printed and "'woman next to the car'" in printed


def test_audit_needs_sentences_and_frames(shared_data, tmp_path, capsys):
    code = main(["audit", "--dataset", "otb", "--root", str(shared_data / "otb_crossing"), "--out", str(tmp_path)])
    assert_one_error_line(capsys, code, "no sequence of otb", "has a sentence to audit")
    code = main(["audit", "--dataset", "lasot", "--root", str(shared_data / "lasot_toolkit"), "--out", str(tmp_path)])
    assert_one_error_line(capsys, code, "no images here")


def test_sampled_frames_start_at_one_and_skip_absent_frames():
    truth = np.array([[1, 1, 5, 5]] * 10, dtype=float)
    truth[9] = np.nan
    absent = np.zeros(10, bool)
    absent[8] = True
    assert sample_frames(truth, absent, 4) == [0, 3, 5, 7]
    assert sample_frames(truth, absent, 1) == [0]
