"""Issue 36, outputs that must never eat their inputs or be half-written: `pack --out` onto one of its inputs,
an empty result file in `score`, stale staging folders of killed runs, full disks under `track` and `report`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chattracker.cli import main
from tests.helpers import assert_one_error_line
from tests.test_benchmark_formats import got10k_root  # noqa: F401  (fixture)


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
