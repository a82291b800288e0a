"""Issue 36, case 13: `describe` refuses what cannot be meant: a non-empty --out that is no pack folder,
--iterations 0, --parallel 0, and a dataset root without images (one line, before any model loads)."""

from __future__ import annotations

import pytest

from chattracker.cli import main
from tests.helpers import assert_one_error_line, make_sot_clips


@pytest.fixture
def clips(shared_data, tmp_path):
    return make_sot_clips(shared_data, tmp_path / "clips", 1, names=("OTB_Deer", "OTB_Toy"))


def test_a_non_empty_out_that_is_no_pack_folder_is_refused(clips, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious\n")
    code = main(["describe", "--dataset", "folder", "--root", str(clips), "--out", str(out), "--no-progress"])
    assert_one_error_line(capsys, code, f"--out {out} is not empty and is no description pack folder")
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    (tmp_path / "file").write_text("x")
    code = main(["describe", "--dataset", "folder", "--root", str(clips), "--out", str(tmp_path / "file")])
    assert_one_error_line(capsys, code, "is a file, not a folder")


@pytest.mark.parametrize("flag", ["--iterations", "--parallel"])
@pytest.mark.parametrize("value", ["0", "-2"])
def test_zero_or_negative_rounds_and_parallel_are_refused(flag, value, clips, tmp_path, capsys):
    code = main(["describe", "--dataset", "folder", "--root", str(clips), "--out", str(tmp_path / "pack"), flag, value])
    assert_one_error_line(capsys, code, f"{flag} must be at least 1", f"got {value}")
    assert not (tmp_path / "pack").exists()


def test_an_annotation_only_root_is_one_line(shared_data, tmp_path, capsys):
    code = main(["describe", "--dataset", "lasot", "--root", str(shared_data / "lasot_toolkit"),
                 "--out", str(tmp_path / "pack"), "--no-progress"])
    err = assert_one_error_line(capsys, code, "no images here (annotation-only layout)", "--root")
    assert "rerun" not in err
    assert not (tmp_path / "pack").exists()
