"""`score`, `report` and `weights download` on bad input (issue 14): scoring nothing is an error, not a 0;
every benchmark `eval` runs can be scored; names cannot break report.md; offline means no download."""

from __future__ import annotations

from pathlib import Path

import pytest

from chattracker.cli import main
from chattracker_eval.datasets import load_dataset
from chattracker_eval.runner import run_benchmark
from tests.helpers import assert_one_error_line
from tests.test_eval_runner import make_clips, woman  # noqa: F401  (fixture)


@pytest.fixture
def clips(woman, tmp_path) -> tuple[Path, Path]:
    root = make_clips(*woman, tmp_path / "data", count=2, length=6)
    run_benchmark(load_dataset("folder", root).sequences, "kcf", tmp_path / "kcf", progress=False)
    return root, tmp_path / "kcf"


def test_score_of_nothing_is_an_error(clips, shared_data, tmp_path, capsys):
    root, _ = clips
    (tmp_path / "empty").mkdir()
    code = main(["score", "--benchmark", "folder", "--annotations", str(root), "--results", str(tmp_path / "empty")])
    assert_one_error_line(capsys, code, f"no result file in {tmp_path / 'empty'} matches a sequence of folder",
                          "clip00.txt", "nothing to score")
    # results of another benchmark: LaSOT's annotations know none of these sequences
    code = main(["score", "--benchmark", "lasot", "--annotations", str(shared_data / "lasot_toolkit"),
                 "--results", str(clips[1])])
    assert_one_error_line(capsys, code, "matches a sequence of lasot")


def test_score_accepts_every_benchmark_eval_runs(clips, capsys):
    root, results = clips
    assert main(["score", "--benchmark", "folder", "--annotations", str(root), "--results", str(results)]) == 0
    assert "folder, protocol official, 2 sequence(s)" in capsys.readouterr().out
    parser_choices = __import__("chattracker.commands.score", fromlist=["BENCHMARKS"]).BENCHMARKS
    assert {"vot", "folder"} <= set(parser_choices)


def test_a_bar_in_a_name_keeps_report_md_a_table(clips, tmp_path, capsys):
    root, results = clips
    out = tmp_path / "report"
    assert main(["report", "--benchmark", "folder", "--annotations", str(root), "--results", str(results),
                 "--names", "KCF | tuned", "--out", str(out), "--no-attributes"]) == 0
    rows = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| KCF")]
    assert len(rows) == 1 and rows[0].startswith("| KCF \\| tuned | 2 | 0 |")
    assert rows[0].replace("\\|", "").count("|") == 9  # 8 cells


def test_weights_download_honours_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHATTRACKER_OFFLINE", "1")
    monkeypatch.setenv("CHATTRACKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CHATTRACKER_WEIGHTS", raising=False)
    code = main(["weights", "download", "nanotrack_v2_head"])
    assert_one_error_line(capsys, code, "CHATTRACKER_OFFLINE is set, so nothing is downloaded (nanotrack_v2_head)")
    assert not list(tmp_path.rglob("*.onnx"))


@pytest.mark.parametrize("kind", ["file", "proc"])
def test_report_unusable_out_is_one_line_before_scoring(clips, tmp_path, capsys, kind):
    root, results = clips
    (tmp_path / "file.txt").write_text("keep")
    out = tmp_path / "file.txt" if kind == "file" else Path("/proc/chattracker-test/report")
    code = main(["report", "--benchmark", "folder", "--annotations", str(root), "--results", str(results),
                 "--out", str(out)])
    assert_one_error_line(capsys, code, "is a file, not a folder" if kind == "file" else "cannot write into /proc")
    assert (tmp_path / "file.txt").read_text() == "keep"
