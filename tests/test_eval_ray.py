"""`chattracker eval --backend ray` against a real local Ray cluster (`ray start --head` on 127.0.0.1, 2 CPUs,
a temporary folder, stopped at the end even when a test fails), on six real short sequences: result files
byte-identical to the local backend's; a Ray worker SIGKILLed mid-sequence has its sequence retried and the
run completes whole; a SIGKILLed driver resumes.

Cluster and drivers run with a temporary HOME holding ``.ray/auth_token`` (what one local ``ray.init`` leaves
behind), so the cluster is token-protected as on a machine with Ray history, and nothing reads the real home;
a driver without the token is one error line saying what to set (issue 36)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from chattracker_eval.datasets import load_dataset
from chattracker_eval.runner import run_benchmark
from tests.helpers import SOT_CLIPS, make_sot_clips

REPO = Path(__file__).resolve().parents[1]
LENGTH = 60
TRACKER = "nanotrack_v2"  # deterministic: the same boxes in any process

pytestmark = [pytest.mark.shared, pytest.mark.slow]

# Ray rewrites 127.0.0.1 to the machine's reachable address unless clustering beyond this host is off; the
# uv hook would also re-run `uv run` for every worker (slow, and not what a plain install does).
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
           "RAY_USAGE_STATS_ENABLED": "0"}


def stop_group(process: subprocess.Popen) -> None:
    """The cluster's processes all live in the session of our `ray start --block`: end that group only."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 30)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def ray_cluster(shared_data):
    import ray  # part of the test dependencies: its absence is a failure, not a skip

    folder = Path(tempfile.mkdtemp(prefix="ct-ray-"))  # short: Ray's socket paths must fit in 107 bytes
    home = folder / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(16))
    # nothing of this machine's Ray set-up leaks in: no auth mode, token or address of the caller's
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env.update(RAY_ENV, HOME=str(home))
    log = (folder / "ray-start.log").open("w")
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               "--port=0", "--num-cpus=2", "--num-gpus=0", f"--temp-dir={folder}", "--include-dashboard=false",
               "--disable-usage-stats"]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        current = folder / "ray_current_cluster"
        deadline = time.monotonic() + 180
        while not current.is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert current.is_file(), f"ray start failed (ray {ray.__version__}): {(folder / 'ray-start.log').read_text()[-2000:]}"
        address = current.read_text().strip()
        assert address.startswith("127.0.0.1:"), address
        yield address, process, env
    finally:
        stop_group(process)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def clips(shared_data, tmp_path_factory) -> Path:
    return make_sot_clips(shared_data, tmp_path_factory.mktemp("ray_clips"), LENGTH)


@pytest.fixture(scope="module")
def local_reference(clips, weights_env, tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("local")
    outcomes = run_benchmark(load_dataset("folder", clips).sequences, TRACKER, results, progress=False)
    assert [o.status for o in outcomes] == ["done"] * len(SOT_CLIPS)
    return results


def eval_command(clips: Path, results: Path, address: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "chattracker.cli", "eval", "--dataset", "folder", "--root", str(clips), "--tracker",
            TRACKER, "--results", str(results), "--backend", "ray", "--address", address, "--workers", "2", *extra]


def assert_same_results(results: Path, reference: Path) -> None:
    """Every sequence whole: boxes byte-identical to the local backend's; one time per frame."""
    for name in SOT_CLIPS:
        assert (results / f"{name}.txt").read_bytes() == (reference / f"{name}.txt").read_bytes(), name
        assert len((results / f"{name}_time.txt").read_text().splitlines()) == LENGTH, name
    assert not list(results.glob(".*")), "temporary files left behind"


def actor_processes(cluster: subprocess.Popen, busy: bool = False) -> list[psutil.Process]:
    """Our cluster's actor processes (Ray titles them ray::SequenceActor, .run while running a sequence)."""
    found = []
    for child in psutil.Process(cluster.pid).children(recursive=True):
        try:
            title = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "SequenceActor" in title and (not busy or "SequenceActor.run" in title):
            found.append(child)
    return found


def test_ray_results_are_byte_identical_to_the_local_backend(ray_cluster, clips, local_reference, tmp_path):
    address, _, env = ray_cluster
    results = tmp_path / "ray"
    run = subprocess.run(eval_command(clips, results, address), cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"ran {len(SOT_CLIPS)} " in run.stdout and "failed 0" in run.stdout, run.stdout
    assert "OPE" in run.stderr  # the driver's progress bar
    assert_same_results(results, local_reference)


def test_a_killed_ray_worker_has_its_sequence_retried_and_the_run_completes(ray_cluster, clips, local_reference,
                                                                          tmp_path):
    address, cluster, env = ray_cluster
    results = tmp_path / "ray"
    driver = subprocess.Popen(eval_command(clips, results, address, "--no-progress"), cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, victim = time.monotonic() + 240, None
        while victim is None and driver.poll() is None and time.monotonic() < deadline:
            busy = actor_processes(cluster, busy=True)
            victim = busy[0] if busy else None
            time.sleep(0.05)
        assert victim is not None, "no actor was seen running a sequence"
        victim.send_signal(signal.SIGKILL)  # mid-sequence: its title says it is running one
        out, err = driver.communicate(timeout=400)
    finally:
        driver.kill()
    assert driver.returncode == 0, err[-3000:]
    assert "Ray worker lost" in err and "trying again" in err, err[-3000:]
    assert "failed 0" in out and f"ran {len(SOT_CLIPS)} " in out, out
    assert_same_results(results, local_reference)


def test_a_sigkilled_driver_resumes_with_the_rest(ray_cluster, clips, local_reference, tmp_path):
    address, cluster, env = ray_cluster
    results = tmp_path / "ray"
    command = eval_command(clips, results, address, "--no-progress")
    driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while driver.poll() is None and time.monotonic() < deadline and not list(results.glob("OTB_*[!e].txt")):
            time.sleep(0.02)
        assert driver.poll() is None, "the run finished before it could be killed"
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        driver.kill()
    done = sorted(p.stem for p in results.glob("OTB_*.txt") if not p.stem.endswith("_time"))
    assert 1 <= len(done) < len(SOT_CLIPS)
    for name in done:
        assert (results / f"{name}.txt").read_bytes() == (local_reference / f"{name}.txt").read_bytes()
    stamps = {name: (results / f"{name}.txt").stat().st_mtime_ns for name in done}
    # The dead driver's actors go with it (Ray ends the actors a driver owns).
    deadline = time.monotonic() + 60
    while actor_processes(cluster) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not actor_processes(cluster), "actors of the killed driver are still alive"
    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"skipped {len(done)} already done" in rerun.stdout and f"ran {len(SOT_CLIPS) - len(done)} " in rerun.stdout
    assert {name: (results / f"{name}.txt").stat().st_mtime_ns for name in done} == stamps
    assert_same_results(results, local_reference)


def test_more_threads_per_worker_than_the_cluster_has_is_one_error_line(ray_cluster, clips, tmp_path):
    """The 2-CPU test cluster can never place an actor asking for 3 (it would wait forever): refused at once."""
    address, _, env = ray_cluster
    results = tmp_path / "ray"
    run = subprocess.run(eval_command(clips, results, address, "--threads-per-worker", "3"), cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    errors = [line for line in run.stderr.splitlines() if line.startswith("chattracker: error:")]
    assert run.returncode != 0 and len(errors) == 1, run.stderr[-2000:]
    assert "--threads-per-worker 3: the Ray cluster has 2 CPU(s)" in errors[0]
    assert not results.exists() or not list(results.glob("*.txt"))


def test_a_relative_root_is_resolved_in_the_driver(ray_cluster, clips, local_reference, tmp_path):
    """Actors run in Ray's own folders: `--root ../clips` must name the same frames there (issue 36)."""
    address, _, env = ray_cluster
    work = tmp_path / "work"
    work.mkdir()
    relative = os.path.relpath(clips, work)
    assert relative.startswith("..")
    names = list(SOT_CLIPS[:2])
    command = eval_command(Path(relative), Path("ray"), address, "--no-progress", "--sequences", *names)
    run = subprocess.run(command, cwd=work, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                         timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "failed 0" in run.stdout, run.stdout
    for name in names:
        assert (work / "ray" / f"{name}.txt").read_bytes() == (local_reference / f"{name}.txt").read_bytes()


def test_a_driver_without_the_token_says_what_to_set(ray_cluster, clips, tmp_path):
    address, _, env = ray_cluster
    bare = tmp_path / "home"
    bare.mkdir()
    run = subprocess.run(eval_command(clips, tmp_path / "ray", address, "--no-progress"), cwd=REPO,
                         env={**env, "HOME": str(bare)}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-3000:]
    assert run.stderr.strip().splitlines() == [
        f"chattracker: error: the Ray cluster at {address} refused the connection for want of its authentication "
        "token: put the cluster's token (`ray get-auth-token` on its head node prints it) in ~/.ray/auth_token, or "
        "name it with RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, and set RAY_AUTH_MODE=token"], run.stderr[-3000:]
    assert not list(bare.iterdir())  # and it wrote nothing into that home
