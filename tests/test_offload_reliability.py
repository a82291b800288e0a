"""`offload convert` / `generate` on bad input and faults (issue 14): the old store survives a failed
re-convert, a non-store folder is never replaced, budgets and arguments are one line, a store error while
loading experts up front is a clean exit (no SIGABRT)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chattracker.cli import main
from chattracker.offload import ExpertStoreError, convert_checkpoint
from chattracker.offload import convert as convert_module
from chattracker.offload.cache import BudgetError
from chattracker.offload.runtime import parse_budget
from chattracker.offload.testing import save_tiny_model
from tests.helpers import assert_one_error_line

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_tiny_model("qwen3_vl_moe", tmp_path_factory.mktemp("offload_reliability") / "model")


@pytest.fixture(scope="module")
def good_store(model, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("stores") / "store"
    convert_checkpoint(model, store, bits=4, group_size=32)
    return store


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_reconvert_failing_part_way_leaves_the_old_store_intact(model, good_store, tmp_path, monkeypatch):
    store = tmp_path / "store"
    convert_checkpoint(model, store, bits=4, group_size=32)
    before = snapshot(store)
    real_write, written = convert_module._TierWriter.write, []

    def failing_write(self, layer, expert, gate_up, down):
        if len(written) == 5:
            raise OSError(28, "No space left on device")
        written.append((layer, expert))
        return real_write(self, layer, expert, gate_up, down)

    monkeypatch.setattr(convert_module._TierWriter, "write", failing_write)
    with pytest.raises(OSError, match="No space left"):
        convert_checkpoint(model, store, bits=8, group_size=32)
    assert len(written) == 5  # it did fail part-way
    assert snapshot(store) == before  # the previous good store, byte for byte
    assert not [p.name for p in tmp_path.iterdir() if p.name != "store"]  # no staging folder left
    monkeypatch.undo()
    convert_checkpoint(model, store, bits=8, group_size=32)  # a successful re-convert replaces it whole
    assert json.loads((store / "manifest.json").read_text())["quantization"]["bits"] == 8


OFFLOAD_CASES = [
    ("into-a-non-store", lambda tmp, model, store: ["convert", str(model), str(tmp / "photos")],
     "is not empty and not an expert store (no manifest.json); refusing to replace it"),
    ("into-a-file", lambda tmp, model, store: ["convert", str(model), str(tmp / "file.txt")], "is a file, not a store folder"),
    ("into-proc", lambda tmp, model, store: ["convert", str(model), "/proc/chattracker-test/store"],
     "cannot write into /proc/chattracker-test"),
    ("group-0", lambda tmp, model, store: ["convert", str(model), str(tmp / "s"), "--group", "0"],
     "expected a positive even group length"),
    ("cold-group-odd", lambda tmp, model, store: ["convert", str(model), str(tmp / "s"), "--cold-bits", "2",
                                                  "--cold-group", "3"], "expected a positive even group length"),
    ("max-new-tokens-negative", lambda tmp, model, store: ["generate", str(model), str(store), "--prompt", "hi",
                                                           "--max-new-tokens", "-1"], "expected a whole number >= 1"),
    ("threads-0", lambda tmp, model, store: ["generate", str(model), str(store), "--prompt", "hi", "--threads", "0"],
     "expected a whole number >= 1"),
    ("empty-prompt", lambda tmp, model, store: ["generate", str(model), str(store), "--prompt", ""], "--prompt is empty"),
    ("no-tokenizer", lambda tmp, model, store: ["generate", str(tmp / "notok"), str(store), "--prompt", "hi"],
     "no tokenizer in"),
    ("budget-abc", lambda tmp, model, store: ["generate", str(model), str(store), "--prompt", "hi",
                                              "--expert-budget", "abc%"], "cannot read expert budget 'abc%'"),
    ("budget-nan", lambda tmp, model, store: ["generate", str(model), str(store), "--prompt", "hi",
                                              "--expert-budget", "nan%"], "cannot read expert budget 'nan%'"),
    ("budget-over-100", lambda tmp, model, store: ["generate", str(model), str(store), "--prompt", "hi",
                                                   "--expert-budget", "150%"], "must be a share in (0%, 100%]"),
]


@pytest.mark.parametrize("case", OFFLOAD_CASES, ids=[c[0] for c in OFFLOAD_CASES])
def test_offload_bad_input_table(case, model, good_store, tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_text("keep me")
    (tmp_path / "file.txt").write_text("keep me")
    (tmp_path / "notok").mkdir()
    for name in ("config.json", "model.safetensors"):
        (tmp_path / "notok" / name).write_bytes((model / name).read_bytes())
    store_before = snapshot(good_store)
    try:
        code = main(["offload", *case[1](tmp_path, model, good_store)])
    except SystemExit as exit_info:  # argparse's own usage errors
        code = exit_info.code
    assert_one_error_line(capsys, code, case[2])
    assert (tmp_path / "photos" / "holiday.jpg").read_text() == "keep me"
    assert (tmp_path / "file.txt").read_text() == "keep me"
    assert snapshot(good_store) == store_before
    assert not (tmp_path / "s").exists()
    assert not [p.name for p in tmp_path.iterdir() if ".converting-" in p.name]


@pytest.mark.parametrize("text, expected", [("0.25", 250), ("25%", 250), (".5", 500), ("100", 100), ("2KiB", 2048),
                                            (0.25, 250), (1000, 1000)])
def test_budget_forms(text, expected):
    assert parse_budget(text, 1000) == expected


@pytest.mark.parametrize("text", ["abc%", "nan%", "inf%", "-5%", "0%", "1.5", "2 apples", "", float("nan"), -3, True])
def test_budget_errors_are_budget_errors(text):
    with pytest.raises(BudgetError):
        parse_budget(text, 1000)


def store_missing_an_expert(good_store: Path, folder: Path) -> tuple[Path, Path]:
    for name, data in snapshot(good_store).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    missing = sorted((folder / "experts").rglob("*.bin"))[2]
    missing.unlink()
    return folder, missing


def test_missing_expert_while_loading_up_front_stops_the_io_threads(model, good_store, tmp_path):
    """The cause of the SIGABRT: IO threads still inside torch when the interpreter exits."""
    import threading

    from chattracker.offload import load_offloaded_model

    store, missing = store_missing_an_expert(good_store, tmp_path / "store")
    before = set(threading.enumerate())  # engines of other tests may still hold theirs
    with pytest.raises(ExpertStoreError, match=missing.name):
        load_offloaded_model(model, store, expert_budget="100%")
    assert not [t.name for t in set(threading.enumerate()) - before if t.name.startswith("expert-io")]


def test_missing_expert_with_method_resident_is_a_clean_exit(model, good_store, tmp_path):
    store, missing = store_missing_an_expert(good_store, tmp_path / "store")
    done = subprocess.run([sys.executable, "-m", "chattracker.cli", "offload", "generate", str(model), str(store),
                           "--prompt", "hello world", "--max-new-tokens", "2", "--method", "resident"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 2, done.stderr  # was 134 (SIGABRT: "terminate called without an active exception")
    assert "terminate called" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "chattracker: error:" in line]
    assert len(errors) == 1 and missing.name in errors[0] and "cannot be opened" in errors[0], done.stderr
