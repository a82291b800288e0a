"""Klotski benchmark (``bench/offload.py --batches 1,2,4,8,16``): batch groups through the offloaded model.

IO-heavy configuration: random-weight Qwen3VLMoeForConditionalGeneration with the real Qwen3-VL-30B-A3B expert shape
(128 experts, top-8, hidden 2048, expert FFN 768) but few layers, experts at INT4, expert budget 25% of the store.
Each sequence is a short prompt (text + one small image); a group of n sequences is one padded generate().

Per n: klotski (the planner's cache split, Fate's gate pooled over the group + the calibrated co-activation table),
fate naively batched (the same padded batch on the plain fate engine), everything resident (compute only), and the
bound max(resident compute, bytes klotski read / measured bandwidth). At n=1: fate against load-on-demand, paired
step by step in one process (``run_paired``), and accelerate's disk offload. The planner gets the compute model
fitted to the calibration run's own timings and the measured read bandwidth, and its n is compared with the best
measured n. Two routing regimes: as built (random routers: near-uniform, weakly correlated) and ``correlated``
(each router a row permutation of the previous one: a token's expert at layer p predicts its expert at p+1).

Measurement: the three engines of a regime are loaded side by side and, for each n, run back to back in an order that
rotates with n (the machine's speed drifts; ratios between neighbours are what is reported), each after the previous
one's reads have landed. Torch computes on ``--threads`` threads (default 1): on a 2-core machine shared with other
jobs an OpenMP team of 2 waits at every barrier for a core someone else holds, which made the INT4 expert matmul up to
40x slower than on one thread; ``machine.thread_probe`` in the JSON is that measurement, taken at the start.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

import offload as base

SIZE = dict(hidden=2048, width=768, layers=3, experts=128, top_k=8, heads=16, kv_heads=4, vocab=2048, prompt=24,
            image_side=4, decode=32, accelerate_decode=1, rounds=1)  # 32 generated tokens: Klotski's output length
QUICK = dict(hidden=256, width=128, layers=3, experts=32, top_k=4, heads=4, kv_heads=2, vocab=1100, prompt=16,
             image_side=4, decode=4, accelerate_decode=1, rounds=1)
BUDGET = 0.25
CALIBRATION_GROUPS = (1, 1, 4, 16)  # prompts per calibration generate(): the compute model sees small and large groups
STAT_KEYS = ("hits", "demanded", "bytes_read", "io_wait_s", "loads_demand", "loads_prefetch", "prefetch_unused")


def group_inputs(size: dict, count: int, seed: int) -> dict:
    """``count`` different prompts of the same length (so no padding), batched: each with its own image."""
    items = [base.make_inputs(size, seed=seed + index) for index in range(count)]
    return {"input_ids": torch.cat([i["input_ids"] for i in items]),
            "attention_mask": torch.cat([i["attention_mask"] for i in items]),
            "pixel_values": torch.cat([i["pixel_values"] for i in items]),
            "image_grid_thw": torch.cat([i["image_grid_thw"] for i in items])}


def _counters(engine) -> dict:
    summary = engine.stats.summary() if engine is not None else {}
    return {key: summary.get(key, 0) for key in STAT_KEYS}


def timed_generate(model, engine, inputs: dict, tokens: int) -> dict:
    """One generate() of the group: wall time, prefill/decode split, decode-only engine counters."""
    marks: dict = {}
    timer = base._Timer(lambda: marks.update(prefill=_counters(engine)))
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                       logits_processor=[timer], prefill_chunk_size=base.PREFILL_CHUNK)
    end = time.perf_counter()
    sequences = inputs["input_ids"].shape[0]
    decode = {k: v - marks["prefill"][k] for k, v in _counters(engine).items()} if engine is not None else {}
    decode_s = end - timer.times[0]
    steps = max(len(timer.times) - 1, 1)
    row = {"sequences": sequences, "total_s": end - start, "prefill_s": timer.times[0] - start, "decode_s": decode_s,
           "tok_s": sequences * tokens / (end - start), "decode_tok_s": sequences * steps / decode_s,
           "latency_s_per_sequence": end - start}
    if engine is not None:
        row.update(decode_hit_rate=decode["hits"] / decode["demanded"] if decode["demanded"] else 0.0,
                   decode_bytes_per_token=decode["bytes_read"] / (sequences * steps),
                   decode_bytes_read=decode["bytes_read"], decode_io_share=decode["io_wait_s"] / decode_s,
                   decode_loads_prefetch=decode["loads_prefetch"], decode_loads_demand=decode["loads_demand"],
                   peak_expert_bytes=engine.stats.peak_resident_bytes, budget_bytes=engine.budget_bytes)
    return row


def load(job: dict, method: str, regime: str, **options):
    from chattracker.offload import load_offloaded_model

    model, engine = load_offloaded_model(job["model_dir"], job["store_dir"], expert_budget=job["budget_bytes"],
                                         method=method, **options)
    if regime == "correlated":
        base.correlate_routers(model)
    base.warm_up(model, base.make_inputs(job["size"]))
    return model, engine


def calibrate_and_plan(job: dict, regime: str, batches: list[int]) -> tuple[dict, dict]:
    """Co-activation table from calibration prompts (saved in the store), compute model from their timings, plan."""
    from chattracker.offload.coactivation import calibrate
    from chattracker.offload.planner import ComputeModel, measure_bandwidth, plan
    from chattracker.offload.store import ExpertStore

    size = job["size"]
    model, engine = load(job, "klotski", regime)
    prompts = [group_inputs(size, n, 5000 + 100 * i) for i, n in enumerate(CALIBRATION_GROUPS)]
    engine.compute_samples.clear()
    table = calibrate(model, engine, prompts, max_new_tokens=size["decode"])
    compute = ComputeModel.fit(engine.compute_samples)
    samples = len(engine.compute_samples)
    engine.close()
    store = ExpertStore(job["store_dir"])
    bandwidth = measure_bandwidth(store, reads=64, threads=2)
    chosen = plan(store, job["budget_bytes"], compute, bandwidth, max_group=max(batches))
    conditional = torch.stack([table.conditional(p) for p in range(table.counts.shape[0])])
    top = conditional.sort(dim=-1, descending=True).values[..., : size["top_k"]].sum(-1)
    seen = table.counts.sum(-1) > 0
    info = {"calibration_prompts": table.prompts, "calibration_tokens": table.tokens, "compute_samples": samples,
            # share of a calibration token's next-layer picks that the top-k most co-activated experts cover
            # (uniform routing gives about top_k / experts)
            "coactivation_top_k_share": float(top[seen].mean()) if seen.any() else 0.0}
    return chosen.to_json(), info


def settle(engine) -> None:
    """Wait until every read the engine has issued has landed, so the next measurement does not share the cores."""
    if engine is None:
        return
    with engine.cache.cond:
        engine.cache.cond.wait_for(lambda: all(e.ready or e.error is not None for e in engine.cache.entries.values()),
                                   timeout=60)


def run_regime(job: dict, regime: str, batches: list[int]) -> dict:
    size = job["size"]
    planned, calibration = calibrate_and_plan(job, regime, batches)
    out: dict = {"plan": planned, "calibration": calibration, "klotski": {}, "fate_batched": {}, "resident": {}}
    runs = {}
    for name, method, options in (("klotski", "klotski", {"allocation": "shallow",
                                                          "resident_layers": planned["resident_layers"]}),
                                  ("fate_batched", "fate", {}), ("resident", "resident", {})):
        runs[name] = load(job, method, regime, **options)
    names = list(runs)
    for index, n in enumerate(sorted(set(batches) | {planned["group"]})):
        inputs = group_inputs(size, n, 100 * n)
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            if name == "fate_batched" and n not in batches:
                continue
            model, engine = runs[name]
            settle(engine)
            row = timed_generate(model, engine, inputs, size["decode"])
            row["load_average_1min"] = os.getloadavg()[0]
            out[name][str(n)] = row
            logging.info("%s %s n=%d: %.2f tok/s (decode %.2f)", regime, name, n, row["tok_s"], row["decode_tok_s"])
    for model, engine in runs.values():
        engine.close()
    del runs
    out["bound"] = {}
    for key in out["klotski"]:
        if key not in out["resident"]:
            continue
        n = int(key)
        compute_s = out["resident"][key]["decode_s"]
        read_s = out["klotski"][key]["decode_bytes_read"] / job["bandwidth"]
        bound_s = max(compute_s, read_s)
        steps = size["decode"] - 1
        out["bound"][key] = {"decode_compute_s": compute_s, "decode_read_s": read_s,
                             "decode_tok_s": n * steps / bound_s,
                             "klotski_decode_vs_bound": out["klotski"][key]["decode_s"] / bound_s}
    paired = base.run_paired({**job, "regime": regime, "rounds": 1, "budget": BUDGET})
    out["paired_n1"] = {
        "decode_s_per_token": paired["decode_s_per_token"],
        "fate_decode_speedup_vs_lod": paired["fate_decode_speedup_vs_lod"],
        "decode_hit_rate": {m: v[0] for m, v in paired["decode_hit_rate_by_round"].items()},
        "decode_io_share": {m: paired["decode_io_wait_s_per_token_by_round"][m][0] / paired["decode_s_per_token"][m]
                            for m in paired["decode_s_per_token"]}}
    return out


def accelerate_n1(job: dict) -> dict:
    """accelerate's disk offload on one sequence (whole experts modules beyond the budget read per forward)."""
    size = job["size"]
    offload_dir = Path(tempfile.mkdtemp(prefix="accel_offload_", dir=job["workdir"]))
    try:
        model, in_memory = base.load_accelerate(Path(job["model_dir"]), job["budget_bytes"], offload_dir)
        row = timed_generate(model, None, group_inputs(size, 1, 100), size["accelerate_decode"])
        row["expert_layers_in_memory"] = in_memory
        return row
    finally:
        import shutil

        shutil.rmtree(offload_dir, ignore_errors=True)


def targets(regime: dict, accelerate: dict | None, batches: list[int]) -> dict:
    klotski = regime["klotski"]
    planned = str(regime["plan"]["group"])  # klotski is also measured at the planner's n
    best = max(klotski, key=lambda n: klotski[n]["tok_s"])
    fate_n1 = regime["fate_batched"]["1"]["tok_s"] if "1" in regime["fate_batched"] else None
    at = klotski[planned]
    bound = regime["bound"].get(planned, {}).get("klotski_decode_vs_bound")
    result = {"planner_n": int(planned), "best_measured_n": int(best),
              "klotski_tok_s_at_planner_n": at["tok_s"], "best_tok_s": klotski[best]["tok_s"],
              "planner_share_of_best": at["tok_s"] / klotski[best]["tok_s"],
              "planner_n_at_least_80pct_of_best": at["tok_s"] >= 0.8 * klotski[best]["tok_s"],
              "klotski_decode_vs_bound_at_planner_n": bound,
              "klotski_within_1.3x_bound": bound is not None and bound <= 1.3}
    if fate_n1:
        result["speedup_vs_fate_n1"] = at["tok_s"] / fate_n1
        result["klotski_3x_fate_n1"] = result["speedup_vs_fate_n1"] >= 3
        # decode alone (prefill left out): what batching changes; prefill costs the same per token at any n on a CPU
        result["decode_speedup_vs_fate_n1"] = at["decode_tok_s"] / regime["fate_batched"]["1"]["decode_tok_s"]
        result["per_sequence_latency_s"] = {"klotski_at_planner_n": at["latency_s_per_sequence"],
                                            "fate_n1": regime["fate_batched"]["1"]["latency_s_per_sequence"]}
    resident = regime["resident"].get(planned)
    if resident:
        result["klotski_vs_resident_at_planner_n"] = at["tok_s"] / resident["tok_s"]
    if accelerate:
        result["speedup_vs_accelerate"] = at["tok_s"] / accelerate["tok_s"]
        result["klotski_20x_accelerate"] = result["speedup_vs_accelerate"] >= 20
    return result


def thread_probe(size: dict, repeats: int = 40) -> dict:
    """Milliseconds of one expert's INT4 matmuls (one token, the bench's expert shape) on 1 and on 2 torch threads."""
    from chattracker.offload.quant import QuantSpec, qlinear, quantize

    spec, hidden, width = QuantSpec.make(4), size["hidden"], size["width"]
    generator = torch.Generator().manual_seed(0)
    gate_up = quantize(torch.randn(2 * width, hidden, generator=generator) * 0.02, spec)
    down = quantize(torch.randn(hidden, width, generator=generator) * 0.02, spec)
    x = torch.randn(1, hidden, generator=generator)
    before, result = torch.get_num_threads(), {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                gate, up = qlinear(x, gate_up, spec, (2 * width, hidden)).chunk(2, dim=-1)
                qlinear(torch.nn.functional.silu(gate) * up, down, spec, (hidden, width))
                times.append(time.perf_counter() - start)
            times.sort()
            result[f"expert_ms_{threads}_threads"] = {"median": 1e3 * times[len(times) // 2],
                                                      "p90": 1e3 * times[int(0.9 * len(times))]}
    finally:
        torch.set_num_threads(before)
    return result


def main(args) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("chattracker").setLevel(logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")
    batches = sorted({int(v) for v in args.batches.split(",")})
    if not batches or batches[0] < 1:
        raise SystemExit("--batches takes positive group sizes, e.g. 1,2,4,8,16")
    size = QUICK if args.quick else SIZE
    threads = args.threads or 1
    probe = thread_probe(size)
    torch.set_num_threads(threads)
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="offload_batches_"))
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir, store_dir = workdir / "model", workdir / "store"
    if not (model_dir / "config.json").is_file():
        base.write_random_checkpoint(size, model_dir)
    build_s = time.perf_counter() - started
    from chattracker.offload import ExpertStore, convert_checkpoint

    if not (store_dir / "manifest.json").is_file():
        convert_checkpoint(model_dir, store_dir, bits=4)
    store = ExpertStore(store_dir)
    bandwidth, read_mode = base.storage_bandwidth(store_dir)
    job = {"size": size, "model_dir": str(model_dir), "store_dir": str(store_dir), "workdir": str(workdir),
           "budget_bytes": int(BUDGET * store.total_bytes), "bandwidth": bandwidth}
    report = {"mode": "batches-quick" if args.quick else "batches", "model": {**size, "expert_bytes": store.expert_bytes,
              "store_bytes": store.total_bytes, "budget": BUDGET, "budget_bytes": job["budget_bytes"]},
              "machine": {"cpus": os.cpu_count(), "torch_threads": threads, "torch": torch.__version__,
                          "load_average_at_start": load_at_start, "thread_probe": probe,
                          "note": "2 cores shared with the lead's session and other helpers' tests and benches: "
                                  "timings are noisy; each row carries the 1-minute load average after it"},
              "page_cache": f"engine expert reads: {read_mode}", "storage_read_bytes_per_s": bandwidth,
              "batches": batches, "build_s": build_s, "build_and_convert_s": time.perf_counter() - started, "regimes": {}}
    accelerate = accelerate_n1(job)
    report["accelerate_n1"] = accelerate
    for regime in ("as_built", "correlated"):
        report["regimes"][regime] = run_regime(job, regime, batches)
        report["regimes"][regime]["targets"] = targets(report["regimes"][regime], accelerate, batches)
        (store_dir / "coactivation.pt").unlink(missing_ok=True)
    report["wall_s"] = time.perf_counter() - started
    report["machine"]["load_average_at_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
