"""Workers keep their built tracker: re-initialising it per sequence gives byte-identical results to a fresh
build in any order of sequences; devices go round-robin and reach `device: auto`; shards split a benchmark
deterministically and share one results folder without running a sequence twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chattracker.cli import main
from chattracker.devices import ENV_DEVICE, device_for_worker, parse_devices, resolve_device
from chattracker_eval.datasets import load_dataset
from chattracker_eval.runner import Workers, hold_results_folder, make_jobs, run_benchmark
from chattracker_eval.shards import SequenceLock, parse_shard, shard_of
from chattracker_eval.worker import SequenceWorker
from tests.helpers import assert_one_error_line, make_sot_clips

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clips(shared_data, tmp_path_factory) -> Path:
    return make_sot_clips(shared_data, tmp_path_factory.mktemp("clips"), length=40)


def enhanced_config(folder: Path) -> Path:
    """The shipped ChatTracker config (NanoTrack v2 + attributes describer + YOLOX grounder + learned
    appearance), with grounding every 5 frames so short clips see many rounds, and no RPO disk cache (a
    cache would hide whether the describer itself is reused cleanly)."""
    config = yaml.safe_load((REPO / "configs" / "chattracker.yaml").read_text())
    config["chattracker"].update(rpo_cache=False, ground_every=5)
    path = folder / "chattracker_test.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.shared
@pytest.mark.slow
def test_a_reused_enhanced_tracker_gives_what_fresh_builds_give_in_any_order(clips, weights_env, tmp_path):
    config = str(enhanced_config(tmp_path))
    sequences = load_dataset("folder", clips).sequences.select(["OTB_Couple", "OTB_Deer", "OTB_Football1", "OTB_Toy"])
    jobs, _ = make_jobs(list(sequences), config, tmp_path)
    fresh = {job.name: SequenceWorker(reuse=False).run(job) for job in jobs}
    assert all(not result.error for result in fresh.values()), {k: v.error for k, v in fresh.items()}
    assert all(result.build_seconds > 0 for result in fresh.values())
    for order in (jobs, jobs[::-1], [jobs[2], jobs[0], jobs[3], jobs[1]]):
        worker = SequenceWorker(reuse=True)
        results = [worker.run(job) for job in order]
        assert [r.build_seconds > 0 for r in results] == [True, False, False, False]  # built once
        for result in results:
            assert result.boxes == fresh[result.name].boxes, f"{result.name} differs after reuse ({[j.name for j in order]})"


@pytest.mark.shared
def test_a_pack_description_is_swapped_per_sequence_on_a_reused_tracker(clips, weights_env, tmp_path):
    config = str(enhanced_config(tmp_path))
    sequences = list(load_dataset("folder", clips).sequences.select(["OTB_Deer", "OTB_Toy"]))
    descriptions = {"OTB_Deer": ("deer", "tree. grass"), "OTB_Toy": ("toy", "hand. person")}
    jobs, _ = make_jobs(sequences, config, tmp_path, descriptions)
    worker = SequenceWorker(reuse=True)
    for job in jobs + jobs[::-1]:
        reused = worker.run(job)
        tracker = next(iter(worker._built.values()))
        assert tracker.descriptions[0].foreground == descriptions[job.name][0]
        assert reused.boxes == SequenceWorker(reuse=False).run(job).boxes


def test_devices_round_robin_and_auto_follows_the_worker(monkeypatch):
    assert [device_for_worker(["cuda:0", "cuda:1"], k) for k in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert device_for_worker(None, 3) is None
    assert parse_devices("cpu, cpu") == ["cpu", "cpu"]
    monkeypatch.delenv(ENV_DEVICE, raising=False)
    SequenceWorker(device="cuda:1")
    assert resolve_device("auto") == "cuda:1" and resolve_device("cpu") == "cpu"
    SequenceWorker(device=None)
    assert resolve_device("auto") in ("cpu", "cuda")


def test_hf_describer_and_grounder_with_device_auto_use_the_worker_device(monkeypatch):
    from chattracker.mllm.hf import pick_device

    monkeypatch.setenv(ENV_DEVICE, "cuda:3")
    assert pick_device("auto") == "cuda:3" and pick_device("cpu") == "cpu"
    source = (REPO / "chattracker" / "grounding" / "hf.py").read_text()
    assert "resolve_device(device)" in source  # the grounder resolves auto the same way


@pytest.mark.parametrize("argv, expected", [
    (["--devices", "cuda:7"], "is not here"),
    (["--devices", "gpu0"], "is not a device"),
    (["--devices", "cpu", "--backend", "ray"], "--devices is for --backend local"),
    (["--address", "127.0.0.1:1"], "--address is for --backend ray"),
    (["--gpus-per-worker", "1"], "--gpus-per-worker is for --backend ray"),
    (["--shard", "0/4"], "shards are numbered from 1"),
    (["--shard", "5/4"], "shards are numbered from 1"),
    (["--shard", "half"], "--shard must be I/N"),
    (["--retries", "-1"], "--retries must be at least 0"),
    (["--threads-per-worker", "0"], "--threads-per-worker must be at least 1"),
    (["--backend", "ray", "--address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
    (["--backend", "ray", "--address", "head"], "is not host:port"),
])
def test_bad_worker_options_are_one_line(tmp_path, capsys, argv, expected, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "seq" / "img").mkdir(parents=True)
    (tmp_path / "seq" / "groundtruth.txt").write_text("1,1,5,5\n")
    (tmp_path / "seq" / "img" / "0001.jpg").write_bytes(b"never read: the options fail first")
    code = main(["eval", "--dataset", "folder", "--root", str(tmp_path), "--tracker", "kcf", "--results",
                 str(tmp_path / "out"), *argv])
    assert_one_error_line(capsys, code, expected)


def test_shards_are_disjoint_deterministic_and_cover_everything():
    names = [f"seq{k}" for k in range(11)]
    shards = [shard_of(names, index, 4) for index in range(1, 5)]
    assert sorted(sum(shards, [])) == sorted(names) and sum(map(len, shards)) == len(names)
    assert shards[0] == ["seq0", "seq4", "seq8"] and shard_of(names, 1, 4) == shards[0]
    assert parse_shard("3/8") == (3, 8) and shard_of(names, 1, 1) == names


def test_a_held_sequence_lock_refuses_a_second_holder_until_released(tmp_path):
    first, second = SequenceLock(tmp_path, "seq"), SequenceLock(tmp_path, "seq")
    assert first.acquire() and not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


@pytest.mark.shared
def test_shards_share_one_folder_and_together_write_what_one_run_writes(clips, weights_env, tmp_path):
    sequences = load_dataset("folder", clips).sequences
    whole = tmp_path / "whole"
    run_benchmark(sequences, "kcf", whole, progress=False, manifest={"dataset": "folder"})
    shared = tmp_path / "shared"
    command = [sys.executable, "-m", "chattracker.cli", "eval", "--dataset", "folder", "--root", str(clips),
               "--tracker", "kcf", "--results", str(shared), "--no-progress"]
    # Three shards at once, as a Slurm array starts them; one more copy of shard 1 (a requeued task
    # still running) must not write any sequence twice.
    processes = [subprocess.Popen([*command, "--shard", shard], cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for shard in ("1/3", "2/3", "3/3", "1/3")]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    names = sorted(p.name for p in whole.glob("*.txt"))
    assert sorted(p.name for p in shared.glob("*.txt")) == names and len(names) == 12
    for name in names:  # boxes byte for byte; times are measurements, one per frame
        ours, theirs = (shared / name).read_bytes(), (whole / name).read_bytes()
        assert ours == theirs if not name.endswith("_time.txt") else ours.count(b"\n") == theirs.count(b"\n"), name
    ran = sum(int(out.split(" ran ")[1].split()[0]) for out, _ in outputs)
    assert ran == 6, outputs  # each sequence ran exactly once over all four processes
    record = yaml.safe_load((shared / "run.json").read_text())
    assert sorted(record["done"]) == sorted(s.name for s in sequences) and "running" not in record
    assert main([*command[3:], "--shard", "1/3"]) == 0  # a rerun of a finished shard: all skipped


@pytest.mark.shared
def test_a_shard_removes_only_the_temp_files_of_what_it_holds(clips, weights_env, tmp_path):
    # Another shard's temp file may be a write in flight (the CI once saw a shard delete another's
    # .run.json temp between its write and its rename): a shard removes temp files of the sequences it
    # has locked and of run.json under the record lock, never the rest.
    sequences = load_dataset("folder", clips).sequences
    ours, theirs = shard_of([s.name for s in sequences], 1, 2), shard_of([s.name for s in sequences], 2, 2)
    out = tmp_path / "out"
    out.mkdir()
    left = [out / f".{ours[0]}.txt.killed.tmp", out / f".{ours[0]}_time.txt.killed.tmp", out / ".run.json.killed.tmp"]
    in_flight = [out / f".{theirs[0]}.txt.writing.tmp", out / f".{theirs[0]}_time.txt.writing.tmp"]
    for path in left + in_flight:
        path.write_text("partial")
    run_benchmark(sequences, "kcf", out, progress=False, manifest={"dataset": "folder"}, shard=(1, 2))
    assert [path.exists() for path in left] == [False] * 3
    assert [path.exists() for path in in_flight] == [True] * 2
    assert all((out / f"{name}.txt").is_file() for name in ours) and not (out / f"{theirs[0]}.txt").exists()


def test_a_plain_run_and_shards_never_share_a_folder(tmp_path, capsys):
    (tmp_path / "data" / "seq" / "img").mkdir(parents=True)
    (tmp_path / "data" / "seq" / "groundtruth.txt").write_text("1,1,5,5\n")
    (tmp_path / "data" / "seq" / "img" / "0001.jpg").write_bytes(b"not read: the folder lock refuses first")
    command = ["eval", "--dataset", "folder", "--root", str(tmp_path / "data"), "--tracker", "kcf", "--results",
               str(tmp_path / "out")]
    with hold_results_folder(tmp_path / "out", shared=True):  # a shard is running
        assert_one_error_line(capsys, main(command), "in use by another eval")
    with hold_results_folder(tmp_path / "out"):  # a plain run is running
        assert_one_error_line(capsys, main([*command, "--shard", "1/2"]), "in use by another eval", "--shard")


def test_workers_plan_for_one_local_worker_runs_inline(tmp_path):
    from chattracker_eval.backends import InlineBackend, PoolBackend

    assert isinstance(Workers(workers=1).start(5), InlineBackend)
    pool = Workers(workers=2).start(5)
    try:
        assert isinstance(pool, PoolBackend) and pool.slots == 2
    finally:
        pool.close()


def test_threads_per_worker_reach_the_models_and_an_inline_worker_gives_them_back(monkeypatch):
    """One worker in this process limits its models' threads while it runs and puts the caller's settings
    back when it closes; a pool worker keeps the given count."""
    import os

    import cv2

    from chattracker.devices import ENV_THREADS, thread_budget
    from chattracker_eval.backends import _start_worker

    monkeypatch.delenv(ENV_THREADS, raising=False)
    before = cv2.getNumThreads()
    inline = Workers(workers=1, threads=1).start(3)
    try:
        assert thread_budget() == 1 and cv2.getNumThreads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        inline.close()
    assert ENV_THREADS not in os.environ and cv2.getNumThreads() == before

    import multiprocessing

    counter = multiprocessing.Value("i", 0)
    try:
        _start_worker(os.getppid(), 2, None, counter, True, 3)  # a parent that is alive: the watcher idles
        assert thread_budget() == 3
    finally:
        import chattracker_eval.backends as backends

        backends._WORKER.restore_threads()
        backends._WORKER = None
    assert ENV_THREADS not in os.environ
