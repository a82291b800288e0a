"""How `chattracker eval` scales: sequences per second with 1 and 2 workers on the local and the Ray backend,
and what keeping models loaded per worker saves with the tiny `hf` describer and grounder.

Thin on purpose: it cuts real sot_dev sequences into clips, calls the runner (``run_benchmark`` with a
``Workers`` plan, the same call `chattracker eval` makes) and prints one JSON row per run, then a summary.
Scaling is measured at the same threads per worker (``--threads-per-worker``, default 1: a worker is one
core, as a Ray actor with ``num_cpus=1`` is); one local worker with every core runs beside them, since on a
small machine that is what one process already gets. Runs are interleaved (local 1 on every core, local 1,
local 2, ray 1, ray 2, local 1 on every core, ...) so a busy neighbour slows all alike; the
load average before and after each run is in its row. ``seq_per_s`` is over the wall time, which includes
starting the workers (spawned processes importing torch; Ray actors on a local cluster this script starts
once on 127.0.0.1 and stops at the end); ``warm_seq_per_s`` counts only the sequences finished after every
worker has finished its first one (what a long benchmark run sees). The tiny
models are the ones the tests build (``tests/test_mllm_hf.py``, ``tests/test_grounding_hf.py``).

    uv run python bench/eval_scale.py --data ../shared/data --json scale.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tiny-model builders live in tests/

from chattracker_eval.datasets import load_dataset  # noqa: E402
from chattracker_eval.runner import Workers, make_jobs, run_benchmark  # noqa: E402
from chattracker_eval.worker import SequenceWorker  # noqa: E402

RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
           "RAY_USAGE_STATS_ENABLED": "0"}


def fail(message: str) -> None:
    print(f"bench: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def make_clips(data: Path, out: Path, length: int, count: int, language: str | None = None) -> Path:
    """Up to ``count`` clips of ``length`` real frames: consecutive segments of every sot_dev sequence."""
    made = 0
    sources = sorted(p for p in (data / "sot_dev").iterdir() if (p / "img").is_dir())
    for segment in range(100):
        for source in sources:
            frames = sorted((source / "img").iterdir())[segment * length:(segment + 1) * length]
            rows = (source / "groundtruth.txt").read_text().splitlines()[segment * length:(segment + 1) * length]
            if len(frames) < length or made >= count or "nan" in rows[0].lower():
                continue
            folder = out / f"{source.name}-{segment}"
            (folder / "img").mkdir(parents=True)
            for frame in frames:
                (folder / "img" / frame.name).symlink_to(frame)
            (folder / "groundtruth.txt").write_text("\n".join(rows) + "\n")
            if language:
                (folder / "language.txt").write_text(language + "\n")
            made += 1
    if made < count:
        fail(f"only {made} clips of {length} frames in {data / 'sot_dev'}")
    return out


def start_ray(folder: Path) -> tuple[subprocess.Popen, str]:
    os.environ.update(RAY_ENV)
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               "--port=0", f"--num-cpus={os.cpu_count()}", "--num-gpus=0", f"--temp-dir={folder}",
               "--include-dashboard=false", "--disable-usage-stats"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    current, deadline = folder / "ray_current_cluster", time.monotonic() + 180
    while not current.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if not current.is_file():
        stop_ray(process)
        fail("ray start --head did not come up")
    return process, current.read_text().strip()


def stop_ray(process: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 30)):
        try:
            os.killpg(process.pid, sig)
            process.wait(grace)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def scale_rows(clips: Path, tracker: str, repeats: int, address: str | None, scratch: Path,
               threads: int) -> list[dict]:
    """Every plan with ``threads`` per worker (what scaling out adds), and one local worker with every core
    (``threads`` None: what one process gets by itself, the baseline a user of one machine compares with)."""
    sequences = load_dataset("folder", clips).sequences
    plans = [("local", 1, None), ("local", 1, threads), ("local", 2, threads)]
    plans += [("ray", 1, threads), ("ray", 2, threads)] if address else []
    rows = []
    for repeat in range(repeats):
        for backend, workers, per_worker in plans:
            results = scratch / f"{backend}{workers}-{per_worker}-{repeat}"
            load = os.getloadavg()[0]
            start = time.perf_counter()
            outcomes = run_benchmark(sequences, tracker, results,
                                     Workers(backend, workers, address=address, threads=per_worker), progress=False)
            wall = time.perf_counter() - start
            failed = [o.name for o in outcomes if o.status != "done"]
            if failed:
                fail(f"{backend} x{workers}: sequences failed: {failed[:3]} ({outcomes[0].error})")
            # Warm: once every worker has finished a sequence (started, built its tracker), per completion after.
            ends = sorted(o.finished for o in outcomes)
            warm = (len(ends) - workers) / (ends[-1] - ends[workers - 1]) if len(ends) > workers else float("nan")
            row = {"part": "scale", "backend": backend, "workers": workers,
                   "threads_per_worker": per_worker or os.cpu_count(), "all_cores": per_worker is None,
                   "repeat": repeat, "tracker": tracker,
                   "sequences": len(outcomes), "frames": sum(o.frames for o in outcomes), "wall_s": round(wall, 2),
                   "seq_per_s": round(len(outcomes) / wall, 3), "warm_seq_per_s": round(warm, 3),
                   "load_before": round(load, 2),
                   "load_after": round(os.getloadavg()[0], 2)}
            print(json.dumps(row), flush=True)
            rows.append(row)
            shutil.rmtree(results, ignore_errors=True)
    return rows


def tiny_hf_config(folder: Path) -> Path:
    """A ChatTracker config whose describer and grounder are tiny random `hf` models saved here."""
    import yaml

    from tests.test_grounding_hf import _save_dino
    from tests.test_mllm_hf import build_models

    describer = build_models(folder / "vlm")["dense"]
    (folder / "dino").mkdir(parents=True)
    grounder = _save_dino(folder / "dino")
    config = {"tracker": "kcf", "enhance": True, "chattracker": {
        "describer": "hf", "describer_params": {"model": str(describer), "device": "auto", "max_new_tokens": 8},
        "grounder": "hf", "grounder_params": {"model": str(grounder), "device": "auto"},
        "rpo": {"iterations": 1}, "rpo_cache": False, "appearance": "hsv_hog", "redetect": False,
        "redescribe": False, "ground_every": 10, "region": "frame"}}  # the tiny DINO needs >1 px at its last level
    path = folder / "tiny_hf.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def reuse_rows(clips: Path, config: Path, repeats: int, scratch: Path) -> list[dict]:
    # box+language: the clips' sentence starts RPO, so a random model's unparseable reply (it is random) still
    # leaves a description, as a real model's would; what is measured is loading, not describing.
    jobs, _ = make_jobs(list(load_dataset("folder", clips).sequences), str(config), scratch, init="box+language")
    SequenceWorker(reuse=False).tracker_for(jobs[0])  # warm-up: imports and first reads belong to neither side
    reference = None
    rows = []
    for repeat in range(repeats):
        for reuse in (False, True):
            worker = SequenceWorker(reuse=reuse)
            results = [worker.run(job) for job in jobs]
            errors = [r.error for r in results if r.error]
            if errors:
                fail(f"tiny hf tracker failed: {errors[0]}")
            boxes = [r.boxes for r in results]
            reference = reference or boxes
            row = {"part": "reuse", "reuse": reuse, "repeat": repeat, "sequences": len(results),
                   "same_boxes_as_first_run": boxes == reference,
                   "frames_per_sequence": len(results[0].boxes),
                   "build_s_per_sequence": round(statistics.mean(r.build_seconds for r in results), 3),
                   "build_s_first": round(results[0].build_seconds, 3),
                   "seconds_per_sequence": round(statistics.mean(r.seconds for r in results), 3),
                   "load_before": round(os.getloadavg()[0], 2)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    """Speed-ups of 2 workers over 1 at the same threads per worker; the all-cores single worker beside them."""
    out: dict = {"cpus": os.cpu_count()}
    scale = [r for r in rows if r["part"] == "scale" and not r["all_cores"]]
    alone = [r for r in rows if r["part"] == "scale" and r["all_cores"]]
    if scale:
        out["threads_per_worker"] = scale[0]["threads_per_worker"]
    if alone:
        entry = {key: statistics.median(r[key] for r in alone) for key in ("seq_per_s", "warm_seq_per_s")}
        two = [r for r in scale if r["backend"] == "local" and r["workers"] == 2]
        if two:
            for key in ("seq_per_s", "warm_seq_per_s"):
                entry[f"local_2_over_this_{key}"] = round(statistics.median(r[key] for r in two) / entry[key], 2)
        out["local_1_all_cores"] = entry
    for backend in sorted({r["backend"] for r in scale}):
        entry = {}
        for key in ("seq_per_s", "warm_seq_per_s"):
            rate = {w: statistics.median(r[key] for r in scale if r["backend"] == backend and r["workers"] == w)
                    for w in (1, 2)}
            entry.update({f"{key}_1": rate[1], f"{key}_2": rate[2], f"{key}_speedup": round(rate[2] / rate[1], 2)})
        out[backend] = entry
    reuse = [r for r in rows if r["part"] == "reuse"]
    if reuse:
        for flag, key in ((False, "before"), (True, "after")):
            mine = [r for r in reuse if r["reuse"] is flag]
            out[f"reuse_{key}"] = {
                "build_s_per_sequence": round(statistics.median(r["build_s_per_sequence"] for r in mine), 3),
                "seconds_per_sequence": round(statistics.median(r["seconds_per_sequence"] for r in mine), 3)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="shared data folder")
    parser.add_argument("--tracker", default="nanotrack_v2", help="tracker of the scaling part (name or YAML)")
    parser.add_argument("--clips", type=int, default=16, help="clips in the scaling part")
    parser.add_argument("--frames", type=int, default=100, help="frames per clip")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats of every run")
    parser.add_argument("--reuse-clips", type=int, default=6, help="clips in the reuse part (0: skip it)")
    parser.add_argument("--reuse-frames", type=int, default=12, help="frames per clip in the reuse part")
    parser.add_argument("--threads-per-worker", type=int, default=1,
                        help="threads of every worker in the scaling runs (default 1: one core per worker)")
    parser.add_argument("--no-ray", action="store_true", help="local backend only")
    parser.add_argument("--json", help="also write all rows and the summary here")
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "sot_dev").is_dir():
        fail(f"{data} has no sot_dev/ (pass --data ../shared/data)")
    if min(args.clips, args.frames, args.repeats, args.threads_per_worker) < 1 or args.reuse_clips < 0 or args.reuse_frames < 2:
        fail("--clips, --frames, --repeats and --threads-per-worker must be >= 1, --reuse-frames >= 2")
    os.environ.setdefault("CHATTRACKER_WEIGHTS", str(data))
    os.environ.setdefault("CHATTRACKER_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)
    scratch = Path(tempfile.mkdtemp(prefix="ct-bench-"))
    cluster = None
    try:
        address = None
        if not args.no_ray:
            cluster, address = start_ray(scratch / "ray")
        rows = scale_rows(make_clips(data, scratch / "clips", args.frames, args.clips), args.tracker, args.repeats,
                          address, scratch, args.threads_per_worker)
        if args.reuse_clips:
            clips = make_clips(data, scratch / "reuse_clips", args.reuse_frames, args.reuse_clips, "person")
            rows += reuse_rows(clips, tiny_hf_config(scratch / "models"), args.repeats, scratch / "reuse")
    finally:
        if cluster is not None:
            stop_ray(cluster)
        shutil.rmtree(scratch, ignore_errors=True)
    result = summary(rows)
    print(json.dumps({"summary": result}))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
