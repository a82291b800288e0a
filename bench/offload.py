"""Benchmark of the MoE offloading engine against load-on-demand, activation-path prefetch, accelerate disk
offload and everything-resident, on a random-weight Qwen3VLMoeForConditionalGeneration with real expert shapes.
Fate and load-on-demand are also measured side by side in one process, taking turns one decode step at a time
("paired"), where this machine's drift in speed cancels out of their ratio, together with ``lod-overlap``
(load-on-demand plus Fate's compute/IO overlap, no prefetch), an ablation: fate's edge over it is what the
prefetcher alone adds.

Prints one JSON document (also written to --out). Page cache: the engine reads experts with O_DIRECT (or, where the
file system lacks it, buffered reads followed by posix_fadvise(POSIX_FADV_DONTNEED)); accelerate's files have their
pages dropped after each experts forward. Either way every read is a real storage read.
Each measurement runs in its own process (forked from a server that has imported torch and transformers) so its
peak memory is its own; ``--quick`` runs them in-process.

    uv run python bench/offload.py --quick
    uv run python bench/offload.py --out offload_bench.json
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import torch

ZIPF_EXPONENT = 1.0
FULL = dict(hidden=2048, width=768, layers=6, experts=32, top_k=4, heads=16, kv_heads=4, vocab=2048, prompt=512,
            image_side=16, decode=64, accelerate_decode=3, budgets=[0.25, 0.5], rounds=2)
QUICK = dict(hidden=512, width=256, layers=4, experts=16, top_k=2, heads=4, kv_heads=2, vocab=1024, prompt=96,
             image_side=8, decode=12, accelerate_decode=3, budgets=[0.25], rounds=1)
COLD_TAIL = 0.25  # fate-int2: share of a prefill's expert assignments read at INT2 (Fate: about 25-30%)
PREFILL_CHUNK = 128  # every method, accelerate included, prefills 128 prompt tokens per pass (the engine's default)
IMAGE_TOKEN = 1000  # special token ids placed inside the small vocabulary (vocab >= 1004)


# ---- model construction -------------------------------------------------------------------------------------
def make_config(size: dict):
    from transformers import Qwen3VLMoeConfig

    text = dict(hidden_size=size["hidden"], intermediate_size=4 * size["width"], moe_intermediate_size=size["width"],
                num_hidden_layers=size["layers"], num_attention_heads=size["heads"], num_key_value_heads=size["kv_heads"],
                head_dim=128, num_experts=size["experts"], num_experts_per_tok=size["top_k"], vocab_size=size["vocab"],
                max_position_embeddings=4096, tie_word_embeddings=False)
    vision = dict(depth=1, hidden_size=128, intermediate_size=256, num_heads=2, out_hidden_size=size["hidden"],
                  deepstack_visual_indexes=[0], patch_size=16, spatial_merge_size=2, temporal_patch_size=2)
    config = Qwen3VLMoeConfig(text_config=text, vision_config=vision, image_token_id=IMAGE_TOKEN,
                              video_token_id=IMAGE_TOKEN + 1, vision_start_token_id=IMAGE_TOKEN + 2,
                              vision_end_token_id=IMAGE_TOKEN + 3)
    config.architectures = ["Qwen3VLMoeForConditionalGeneration"]
    return config


def write_random_checkpoint(size: dict, folder: Path) -> None:
    """Random bf16 weights written shard by shard (one per decoder layer), never the whole model in memory."""
    from safetensors.torch import save_file
    from transformers import Qwen3VLMoeForConditionalGeneration

    config = make_config(size)
    with torch.device("meta"):
        skeleton = Qwen3VLMoeForConditionalGeneration(config)
    norms = {name for name, module in skeleton.named_modules() if "norm" in type(module).__name__.lower()}
    generator = torch.Generator().manual_seed(0)
    shards: dict[str, dict[str, torch.Tensor]] = {}
    for name, parameter in skeleton.state_dict().items():
        module = name.rsplit(".", 1)[0]
        if module in norms or name.endswith("norm.weight"):
            tensor = torch.ones(parameter.shape) if name.endswith("weight") else torch.zeros(parameter.shape)
        elif name.endswith("bias"):
            tensor = torch.zeros(parameter.shape)
        else:
            tensor = torch.randn(parameter.shape, generator=generator) * 0.02
        marker = name.split("layers.")[1].split(".")[0] if ".language_model.layers." in name else "rest"
        shards.setdefault(marker, {})[name] = tensor.to(torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for marker, tensors in shards.items():
        file = f"model-{marker}.safetensors"
        save_file(tensors, folder / file, metadata={"format": "pt"})
        weight_map.update({key: file for key in tensors})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config.save_pretrained(folder)


def make_inputs(size: dict, seed: int = 1) -> dict:
    """A prompt of ``size['prompt']`` tokens: text, one image (image_side^2 patches, 2x2 merged), text."""
    side = size["image_side"]
    image_tokens = side * side // 4
    generator = torch.Generator().manual_seed(seed)
    text = size["prompt"] - image_tokens - 2
    words = torch.randint(0, IMAGE_TOKEN, (text,), generator=generator).tolist()
    ids = words[: text // 2] + [IMAGE_TOKEN + 2] + [IMAGE_TOKEN] * image_tokens + [IMAGE_TOKEN + 3] + words[text // 2:]
    return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "pixel_values": torch.randn(side * side, 3 * 2 * 16 * 16, generator=generator),
            "image_grid_thw": torch.tensor([[1, side, side]])}


def warm_up(model, inputs: dict, words: int = 8) -> None:
    """Generate 2 tokens from the prompt's image block (start, image tokens, end) with ``words`` text tokens on each
    side, prefilled in two chunks. Every kernel of the measured run (vision tower, chunked attention with a mask,
    expert matmuls for one and many tokens) runs once first, so first-call costs are in neither phase and their
    library code is paged in before memory is measured."""
    ids = inputs["input_ids"][0].tolist()
    start = ids.index(IMAGE_TOKEN + 2)
    end = ids.index(IMAGE_TOKEN + 3) + 1
    kept = torch.tensor([ids[max(0, start - words): end + words]])
    with torch.no_grad():
        model.generate(**{**inputs, "input_ids": kept, "attention_mask": torch.ones_like(kept)}, max_new_tokens=2,
                       do_sample=False, prefill_chunk_size=kept.shape[1] // 2 + 1)


def correlate_routers(model, seed: int = 7) -> None:
    """Real layer-to-layer correlation: each layer's router is the previous one's with its experts (rows) permuted.

    The residual stream changes little from one layer to the next, so a token that picks expert a at layer p then
    picks pi(a) at layer p+1 much of the time: the kind of structure Klotski's co-activation table captures."""
    layers = model.model.language_model.layers
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for previous, layer in zip(layers, layers[1:]):
            order = torch.randperm(previous.mlp.gate.weight.shape[0], generator=generator)
            layer.mlp.gate.weight.copy_(previous.mlp.gate.weight[order])


def add_zipf_bias(model, exponent: float) -> None:
    """Add a fixed per-layer Zipf popularity bias -s*ln(rank) to every router's logits (ranks permuted per layer).

    The router's forward is replaced (not hooked: a hook would compute the router twice), so the model's own router
    calls and Fate's cross-layer gate, which calls the next layer's router module, both see the bias."""
    import types

    import torch.nn.functional as F

    for index, layer in enumerate(model.model.language_model.layers):
        gate = layer.mlp.gate
        ranks = torch.randperm(gate.num_experts, generator=torch.Generator().manual_seed(100 + index)) + 1
        bias = -exponent * torch.log(ranks.float())

        def biased_forward(module, hidden_states, bias=bias):
            hidden = hidden_states.reshape(-1, module.hidden_dim)
            logits = F.linear(hidden, module.weight) + bias.to(hidden.dtype)
            probs = torch.softmax(logits, dtype=torch.float, dim=-1)
            top, indices = torch.topk(probs, module.top_k, dim=-1)
            top = (top / top.sum(dim=-1, keepdim=True)).to(logits.dtype)
            return logits, top, indices

        gate.forward = types.MethodType(biased_forward, gate)


# ---- one measurement ----------------------------------------------------------------------------------------
class _Timer:
    """Logits-processor hook: the first call ends prefill, later calls end decode steps."""

    def __init__(self, on_first) -> None:
        self.times: list[float] = []
        self.on_first = on_first

    def __call__(self, input_ids, scores):
        self.times.append(time.perf_counter())
        if len(self.times) == 1:
            self.on_first()
        return scores


def memory_now() -> dict[str, int]:
    """Resident bytes: total, and the anonymous part (heap, tensors, expert slots) apart from file-backed pages.

    File-backed pages are mostly shared-library code that the first call of each kernel pages in: clean, shared with
    other processes and dropped by the kernel under memory pressure, so they are not memory the model holds."""
    try:
        fields = {}
        with open("/proc/self/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "RssShmem"):
                    fields[key] = int(value.split()[0]) * 1024
        return {"rss": sum(fields.values()), "anon": fields["RssAnon"] + fields["RssShmem"]}
    except (OSError, KeyError):  # not Linux: psutil's total only
        rss = psutil.Process().memory_info().rss
        return {"rss": rss, "anon": rss}


_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
_LIBRARY = re.compile(r"\.so(\.[0-9]+)*$")


def library_rss() -> int:
    """Resident bytes of shared-library mappings (``*.so``): kernel code that torch pages in the first time each kernel
    runs. Clean, shared with every other process using the library, and the same whatever the model; 0 off Linux."""
    total, library = 0, False
    try:
        with open("/proc/self/smaps") as handle:
            for line in handle:
                if _MAPPING.match(line):
                    library = bool(_LIBRARY.search(line.split(maxsplit=5)[-1].strip()))
                elif library and line.startswith("Rss:"):
                    total += int(line.split()[1]) * 1024
    except OSError:
        return 0
    return total


class _RSSPeak:
    """Samples memory every 5 ms (ru_maxrss is per process and never goes down, so in-process runs need this).

    Besides anonymous and total RSS it keeps the peak of total RSS less library code. Reading smaps every 5 ms would
    cost too much, so library code is read at the start of each window (``new_window``: after loading, after the
    warm-up) and subtracted from every sample of that window. Library pages only accumulate, so a sample can only
    count too much, never too little."""

    def __init__(self) -> None:
        self.peak, self.running = {"rss": 0, "anon": 0, "rss_less_library": 0}, True
        self.library = library_rss()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def new_window(self) -> None:
        self.library = library_rss()

    def _sample(self) -> None:
        now = memory_now()
        now["rss_less_library"] = now["rss"] - self.library
        self.peak = {key: max(self.peak[key], now[key]) for key in self.peak}

    def _run(self) -> None:
        while self.running:
            self._sample()
            time.sleep(0.005)

    def stop(self) -> dict[str, int]:
        self.running = False
        self.thread.join()
        self._sample()
        return self.peak


def _drop_folder_pages(folders: list[Path]) -> None:
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                fd = os.open(path, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)


def load_accelerate(model_dir: Path, budget_bytes: int, offload_dir: Path):
    """transformers + accelerate disk offload: experts modules beyond the byte budget live in offload_folder."""
    from transformers import Qwen3VLMoeForConditionalGeneration

    config = make_config_from(model_dir)
    text = config.text_config
    layer_bytes = 3 * text.moe_intermediate_size * text.hidden_size * text.num_experts * 4  # float32 in memory
    in_memory = min(text.num_hidden_layers, budget_bytes // layer_bytes)
    device_map = {"model.visual": "cpu", "model.language_model.embed_tokens": "cpu",
                  "model.language_model.norm": "cpu", "model.language_model.rotary_emb": "cpu", "lm_head": "cpu"}
    for index in range(text.num_hidden_layers):
        prefix = f"model.language_model.layers.{index}"
        for part in ("self_attn", "input_layernorm", "post_attention_layernorm", "mlp.gate"):
            device_map[f"{prefix}.{part}"] = "cpu"
        device_map[f"{prefix}.mlp.experts"] = "cpu" if index < in_memory else "disk"
    model = Qwen3VLMoeForConditionalGeneration.from_pretrained(
        model_dir, device_map=device_map, offload_folder=str(offload_dir), dtype=torch.float32).eval()
    folders = [model_dir, offload_dir]
    for layer in model.model.language_model.layers:
        layer.mlp.experts.register_forward_hook(lambda *args: _drop_folder_pages(folders))
    return model, in_memory


def make_config_from(model_dir: Path):
    from transformers import AutoConfig
    return AutoConfig.from_pretrained(model_dir)


def run_one(job: dict) -> dict:
    """Load one method, generate once (prefill + decode), report times, cache statistics and memory."""
    from chattracker.offload import load_offloaded_model

    torch.manual_seed(0)
    size, method = job["size"], job["method"]
    engine_method, options = job.get("engine_method", method), job.get("options", {})
    model_dir, store_dir = Path(job["model_dir"]), Path(job["store_dir"])
    import transformers  # import everything the run will need first: library code is not model memory
    from transformers import Qwen3VLMoeForConditionalGeneration  # noqa: F401
    from transformers.generation import utils  # noqa: F401

    gc.collect()
    before = memory_now()
    sampler = _RSSPeak()
    before_library = sampler.library
    engine = None
    start_load = time.perf_counter()
    offload_dir = None
    if method == "accelerate":
        offload_dir = Path(tempfile.mkdtemp(prefix="accel_offload_", dir=job["workdir"]))
        model, layers_in_memory = load_accelerate(model_dir, job["budget_bytes"], offload_dir)
        non_expert = sum(p.numel() * p.element_size() for n, p in model.named_parameters()
                         if ".experts." not in n and p.device.type != "meta")
        decode_tokens = size["accelerate_decode"]
        _drop_folder_pages([model_dir, offload_dir])
    else:
        model, engine = load_offloaded_model(model_dir, store_dir, expert_budget=job["budget_bytes"],
                                             method=engine_method, io_threads=job.get("io_threads", 2), **options)
        non_expert = sum(p.numel() * p.element_size() for p in model.parameters())
        decode_tokens = size["decode"]
        layers_in_memory = None
    load_s = time.perf_counter() - start_load
    sampler.new_window()
    if job["regime"] == "zipf":
        add_zipf_bias(model, ZIPF_EXPONENT)
    inputs = make_inputs(size)
    snapshot = {}

    def end_of_prefill():
        if engine is not None:
            snapshot["prefill"] = engine.stats.summary()
            engine.stats.reset()

    warm_up(model, inputs)
    sampler.new_window()
    process = psutil.Process()
    io_marks = {}

    def end_of_prefill_io():
        io_marks["prefill_end"] = process.io_counters().read_bytes
        end_of_prefill()

    timer = _Timer(end_of_prefill_io)
    if engine is not None:
        engine.stats.reset()
    io_marks["start"] = process.io_counters().read_bytes
    # Sampled decode with a fixed seed: the same tokens for every method that computes the same logits. Greedy
    # decoding of a random-weight model falls into repeating a token, which would make routing repeat too.
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=decode_tokens, min_new_tokens=decode_tokens, do_sample=True,
                       top_k=0, top_p=1.0, temperature=1.0, logits_processor=[timer], **job.get("generate", {}))
    end = time.perf_counter()
    io_end = process.io_counters().read_bytes
    peaks = sampler.stop()
    library_paged_in = library_rss() - before_library
    prefill_s = timer.times[0] - start
    steps = [b - a for a, b in zip(timer.times, timer.times[1:])]
    decode_mean_s = sum(steps) / max(len(steps), 1)
    # median step: other jobs share these 2 cores and stall single steps; the mean is reported too
    decode_s = sorted(steps)[len(steps) // 2] if steps else float("nan")
    row = {"method": method, "regime": job["regime"], "budget": job["budget"], "budget_bytes": job["budget_bytes"],
           "load_s": load_s, "prefill_s": prefill_s, "prefill_tok_s": size["prompt"] / prefill_s,
           "decode_s_per_token": decode_s, "decode_tok_s": 1 / decode_s, "decode_tokens": len(timer.times) - 1,
           "decode_mean_s_per_token": decode_mean_s, "decode_steps_s": steps,
           "storage_read_bytes_prefill": io_marks["prefill_end"] - io_marks["start"],
           "storage_read_bytes_per_decode_token": (io_end - io_marks["prefill_end"]) / max(len(steps), 1),
           "total_s": end - start, "non_expert_bytes": non_expert, "rss_before_bytes": before["rss"],
           "peak_rss_bytes": peaks["rss"], "peak_rss_above_start_bytes": peaks["rss"] - before["rss"],
           "peak_anon_above_start_bytes": peaks["anon"] - before["anon"],
           "peak_rss_less_library_above_start_bytes": peaks["rss_less_library"] - (before["rss"] - before_library),
           "library_code_paged_in_bytes": library_paged_in}
    if engine is not None:
        decode = engine.stats.summary()
        for phase, stats in (("prefill", snapshot.get("prefill", {})), ("decode", decode)):
            row[phase] = {key: stats.get(key) for key in ("hit_rate", "hit_or_late_rate", "precision", "recall",
                                                          "bytes_read", "io_wait_s", "loads_demand", "loads_prefetch",
                                                          "prefetch_unused", "loads_cold", "bytes_read_cold",
                                                          "gate_skips")}
        row["decode"]["bytes_per_token"] = decode["bytes_read"] / max(row["decode_tokens"], 1)
        row["decode"]["io_wait_s_per_token"] = decode["io_wait_s"] / max(row["decode_tokens"], 1)
        row["peak_expert_bytes"] = decode["peak_resident_bytes"]
        row["capacities"] = {str(k): v for k, v in engine.capacities.items()}
        engine.close()
    else:
        row["expert_layers_in_memory"] = layers_in_memory
    del model, engine
    gc.collect()
    if offload_dir is not None:  # accelerate's offload folder holds every expert in float32 (GBs)
        shutil.rmtree(offload_dir, ignore_errors=True)
    return row


PAIRED = ("fate", "lod", "lod-overlap")
PAIRED_ROUNDS = 2  # each round: fresh engines, 63 decode steps of each method taken in turns


class _TurnTimer:
    """Logits processor for one runner: forces the scheduled token, times the runner's own time per step, then
    switches back to the scheduler until the runner's next turn. Step 0 is the prefill."""

    def __init__(self, tokens: list[int], engine) -> None:
        self.tokens, self.engine = tokens, engine
        self.busy: list[float] = []
        self.resumed = 0.0
        self.io_wait_at_prefill = 0.0
        self.hits_at_prefill = (0, 0)

    def __call__(self, input_ids, scores):
        import greenlet

        self.busy.append(time.perf_counter() - self.resumed)
        if len(self.busy) == 1:
            self.io_wait_at_prefill = self.engine.stats.io_wait_s
            summary = self.engine.stats.summary()
            self.hits_at_prefill = (summary["hits"], summary["demanded"])
        forced = torch.full_like(scores, -math.inf)
        forced[:, self.tokens[len(self.busy) - 1]] = 0
        greenlet.getcurrent().parent.switch()
        self.resumed = time.perf_counter()
        return forced


def run_paired(job: dict) -> dict:
    """Fate and the load-on-demand baselines decoding side by side in one process, taking turns step by step.

    This machine's speed drifts by 10-20% between processes and even between runs seconds apart, more than
    load-on-demand's whole IO wait (a few ms of a ~45 ms token). Here each method's generate() runs as a coroutine
    (greenlet) and they alternate one decode step at a time (rotating who goes first), so the drift cancels out of
    their ratio; every method decodes the same forced, seeded random token sequence, so routing is identical. Each step
    is timed from the moment the method gets its turn. ``job['rounds']`` rounds, fresh engines each; decode time per
    token: median of every step of every round."""
    import greenlet

    from chattracker.offload import load_offloaded_model

    size = job["size"]
    inputs = make_inputs(size)
    generator = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, IMAGE_TOKEN, (size["decode"],), generator=generator).tolist()
    names = list(PAIRED)  # fate, lod, lod-overlap
    steps: dict[str, list[float]] = {m: [] for m in names}
    by_round: dict[str, list[float]] = {m: [] for m in names}
    io_wait: dict[str, list[float]] = {m: [] for m in names}
    hits: dict[str, list[float]] = {m: [] for m in names}
    for index in range(job["rounds"]):
        models, timers, runners = {}, {}, {}
        for method in names:
            model, engine = load_offloaded_model(job["model_dir"], job["store_dir"], expert_budget=job["budget_bytes"],
                                                 method=method, io_threads=job.get("io_threads", 2))
            if job["regime"] == "zipf":
                add_zipf_bias(model, ZIPF_EXPONENT)
            elif job["regime"] == "correlated":
                correlate_routers(model)
            warm_up(model, inputs)
            models[method] = (model, engine)
            timers[method] = _TurnTimer(tokens, engine)

            def run(model=model, timer=timers[method]):
                with torch.no_grad():
                    model.generate(**inputs, max_new_tokens=len(tokens), min_new_tokens=len(tokens), do_sample=False,
                                   logits_processor=[timer], prefill_chunk_size=PREFILL_CHUNK)

            runners[method] = greenlet.greenlet(run)
        # Coroutines in this one thread (not threads: each thread would bring its own OpenMP team, whose idle workers
        # spin on the 2 cores while another team computes). Turn by turn, the order rotating each cycle.
        order, cycle = list(names), index
        while order:
            shift = cycle % len(order)
            for method in order[shift:] + order[:shift]:
                timers[method].resumed = time.perf_counter()
                runners[method].switch()  # runs until its next logits call (one step) or the end; errors propagate
            order = [m for m in order if not runners[m].dead]
            cycle += 1
        for method, timer in timers.items():
            decode = timer.busy[1:]
            steps[method] += decode
            by_round[method].append(sorted(decode)[len(decode) // 2])
            engine = models[method][1]
            io_wait[method].append((engine.stats.io_wait_s - timer.io_wait_at_prefill) / len(decode))
            summary = engine.stats.summary()
            demanded = summary["demanded"] - timer.hits_at_prefill[1]
            hits[method].append((summary["hits"] - timer.hits_at_prefill[0]) / demanded if demanded else 0.0)
            engine.close()
        del models, timers, runners
        gc.collect()
    median = {m: sorted(v)[len(v) // 2] for m, v in steps.items()}
    step_ratio = sorted(lod / fate for lod, fate in zip(steps["lod"], steps["fate"]))
    return {"method": "paired", "regime": job["regime"], "budget": job["budget"], "rounds": job["rounds"],
            "decode_s_per_token": median, "decode_s_per_token_by_round": by_round,
            "decode_io_wait_s_per_token_by_round": io_wait, "decode_hit_rate_by_round": hits,
            "fate_decode_speedup_vs_lod": median["lod"] / median["fate"],
            "fate_decode_speedup_vs_lod_median_step_ratio": step_ratio[len(step_ratio) // 2],
            "fate_decode_speedup_vs_lod_overlap": median["lod-overlap"] / median["fate"]}


# ---- orchestration ------------------------------------------------------------------------------------------
def storage_bandwidth(store_dir: Path, threads: int = 2) -> tuple[float, str]:
    """Bytes/s reading every expert file once with ``threads`` readers through the engine's own read path
    (``ExpertStore.read_into``: O_DIRECT, or buffered reads with pages dropped), and that path's name."""
    from chattracker.offload import ExpertStore
    from chattracker.offload.store import aligned_buffer

    store = ExpertStore(store_dir, verify="always")  # the engine checks each file once; this reads each once
    _drop_folder_pages([store_dir / "experts"])
    keys = [(layer, expert) for layer in store.layers for expert in range(store.num_experts)]
    buffers = [aligned_buffer(store.slot_bytes) for _ in range(threads)]

    def read(worker: int) -> int:
        return sum(len(store.read_into(layer, expert, buffers[worker])) for layer, expert in keys[worker::threads])

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(read, range(threads)))
    return total / (time.perf_counter() - start), store.read_mode


# The modules every measurement imports; a forkserver imports them once and forks a fresh process per measurement
# (its own memory, so its own peak), which saves ~15 s of imports per run. It never runs a torch op itself, so no
# OpenMP thread pool exists at fork time.
PRELOAD = ["torch", "transformers", "transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe",
           "transformers.generation.utils", "chattracker.offload", "accelerate"]


def measure(job: dict) -> dict:
    return run_paired(job) if job["method"] == "paired" else run_one(job)


def _measure_in_child(job: dict, connection) -> None:
    try:
        connection.send(measure(job))
    except BaseException as error:  # reported in the JSON, the other measurements go on
        connection.send({"method": job["method"], "regime": job["regime"], "budget": job["budget"],
                         "error": f"{type(error).__name__}: {error}"})
    finally:
        connection.close()


def run_forked(context, job: dict) -> dict:
    """``run_one(job)`` in a fresh process forked from the preloaded forkserver."""
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_measure_in_child, args=(job, sender))
    process.start()
    sender.close()
    try:
        row = receiver.recv()
    except EOFError:  # the child died without a word (killed, crashed)
        row = {"method": job["method"], "regime": job["regime"], "budget": job["budget"], "error": "worker died"}
    process.join()
    if process.exitcode and "error" not in row:
        row = {**row, "error": f"worker exit code {process.exitcode}"}
    return row


def merge_rounds(rows: list[dict]) -> dict:
    """One row from the rounds of one (method, regime, budget): decode time per token is the median of all rounds'
    steps pooled, prefill the median round, memory the worst round, cache statistics summed over the rounds."""
    good = [r for r in rows if "error" not in r]
    if not good:
        return rows[0]
    steps = sorted(t for r in good for t in r["decode_steps_s"])
    prefill = sorted(r["prefill_s"] for r in good)[len(good) // 2]
    merged = {**good[0], "rounds": len(good), "prefill_s": prefill, "prefill_tok_s": good[0]["prefill_tok_s"] *
              good[0]["prefill_s"] / prefill, "decode_s_per_token": steps[len(steps) // 2],
              "decode_mean_s_per_token": sum(steps) / len(steps), "decode_tokens": sum(r["decode_tokens"] for r in good),
              "decode_s_per_token_by_round": [r["decode_s_per_token"] for r in good]}
    merged["decode_tok_s"] = 1 / merged["decode_s_per_token"]
    merged.pop("decode_steps_s")
    for key in ("peak_rss_bytes", "peak_rss_above_start_bytes", "peak_anon_above_start_bytes",
                "peak_rss_less_library_above_start_bytes", "library_code_paged_in_bytes"):
        merged[key] = max(r[key] for r in good)
    merged["storage_read_bytes_per_decode_token"] = sum(r["storage_read_bytes_per_decode_token"] for r in good) / len(good)
    for phase in ("prefill", "decode"):
        if phase not in good[0]:
            continue
        phases = [r[phase] for r in good]
        total = {key: sum(p[key] or 0 for p in phases) for key in ("bytes_read", "io_wait_s", "loads_demand",
                                                                   "loads_prefetch", "prefetch_unused", "loads_cold",
                                                                   "bytes_read_cold", "gate_skips")}
        for key in ("hit_rate", "hit_or_late_rate", "precision", "recall"):
            values = [p[key] for p in phases if p[key] is not None]
            total[key] = sum(values) / len(values) if values else None
        merged[phase] = total
    tokens = merged["decode_tokens"]
    if "decode" not in merged:
        return merged
    merged["decode"]["bytes_per_token"] = merged["decode"]["bytes_read"] / max(tokens, 1)
    merged["decode"]["io_wait_s_per_token"] = merged["decode"]["io_wait_s"] / max(tokens, 1)
    return merged


def summarize(rows: list[dict], bandwidth: float, budgets: list[float], paired: dict[tuple, dict]) -> dict:
    """Ratios and targets per regime and budget (25% is the judged budget). "Not slower than load-on-demand" is
    judged on the paired same-process comparison where there is one (see :func:`run_paired`)."""
    out = {}
    for regime in ("as_built", "zipf"):
        resident = next((r for r in rows if r["regime"] == regime and r["method"] == "resident" and "error" not in r), None)
        out[regime] = {}
        for budget in budgets:
            group = {r["method"]: r for r in rows if r["regime"] == regime and r["budget"] == budget}
            fate, lod, accel = group.get("fate"), group.get("lod"), group.get("accelerate")
            entry = {}
            pair = paired.get((regime, budget))
            if pair is not None:
                entry["paired"] = pair if "error" in pair else {
                    "rounds": pair["rounds"],
                    "decode_tok_s": {m: 1 / t for m, t in pair["decode_s_per_token"].items()},
                    "decode_tok_s_by_round": {m: [1 / t for t in v] for m, v in pair["decode_s_per_token_by_round"].items()},
                    "decode_io_wait_s_per_token_by_round": pair["decode_io_wait_s_per_token_by_round"]}
            pair_ok = pair is not None and "error" not in pair
            for name, row in group.items():
                if "error" in row:
                    entry[name] = {"error": row["error"]}
                    continue
                entry[name] = {"prefill_tok_s": row["prefill_tok_s"], "decode_tok_s": row["decode_tok_s"],
                               "decode_tok_s_mean": 1 / row["decode_mean_s_per_token"],
                               "decode_tok_s_by_round": [1 / t for t in row.get("decode_s_per_token_by_round", [])],
                               "peak_anon_rss_above_start_bytes": row["peak_anon_above_start_bytes"],
                               "peak_rss_less_library_above_start_bytes": row["peak_rss_less_library_above_start_bytes"],
                               "library_code_paged_in_bytes": row["library_code_paged_in_bytes"],
                               "decode_tokens": row["decode_tokens"], "peak_rss_bytes": row["peak_rss_bytes"],
                               "storage_read_bytes_per_decode_token": row["storage_read_bytes_per_decode_token"]}
                if "decode" in row:
                    entry[name].update(decode_hit_rate=row["decode"]["hit_rate"], decode_precision=row["decode"]["precision"],
                                       decode_recall=row["decode"]["recall"],
                                       decode_bytes_per_token=row["decode"]["bytes_per_token"],
                                       decode_gate_skips=row["decode"]["gate_skips"],
                                       prefill_hit_rate=row["prefill"]["hit_rate"],
                                       prefill_bytes_read=row["prefill"]["bytes_read"],
                                       prefill_loads_cold=row["prefill"]["loads_cold"],
                                       prefill_precision=row["prefill"]["precision"],
                                       prefill_recall=row["prefill"]["recall"])
            ok = fate and "error" not in fate and resident
            if ok:
                io_s = fate["decode"]["bytes_per_token"] / bandwidth
                bound = max(resident["decode_s_per_token"], io_s)
                prefill_io = fate["prefill"]["bytes_read"] / bandwidth if fate.get("prefill") else 0
                prefill_bound = max(resident["prefill_s"], prefill_io)
                own_compute = fate["decode_s_per_token"] - fate["decode"]["io_wait_s_per_token"]
                entry["bound"] = {"decode_s_per_token": bound, "resident_decode_s_per_token": resident["decode_s_per_token"],
                                  "io_decode_s_per_token": io_s, "prefill_s": prefill_bound,
                                  "same_run_decode_s_per_token": max(own_compute, io_s)}
                ratios = {"fate_decode_over_bound": fate["decode_s_per_token"] / bound,
                          "fate_decode_over_same_run_bound": fate["decode_s_per_token"] / max(own_compute, io_s),
                          "fate_prefill_over_bound": fate["prefill_s"] / prefill_bound}
                if lod and "error" not in lod:
                    ratios["fate_decode_speedup_vs_lod"] = lod["decode_s_per_token"] / fate["decode_s_per_token"]
                    ratios["fate_prefill_speedup_vs_lod"] = lod["prefill_s"] / fate["prefill_s"]
                if pair_ok:  # same process, alternating; lod-overlap: what the prefetcher adds beyond the overlap
                    ratios["fate_decode_speedup_vs_lod_paired"] = pair["fate_decode_speedup_vs_lod"]
                    ratios["fate_decode_speedup_vs_lod_paired_median_step_ratio"] = (
                        pair["fate_decode_speedup_vs_lod_median_step_ratio"])
                    ratios["fate_decode_speedup_vs_lod_overlap_paired"] = pair["fate_decode_speedup_vs_lod_overlap"]
                int2 = group.get("fate-int2")
                if int2 and "error" not in int2:  # Fate's optional INT2 cold tail for prefill, against plain fate
                    ratios["fate_int2_tail_prefill_speedup_vs_fate"] = fate["prefill_s"] / int2["prefill_s"]
                    ratios["fate_int2_tail_prefill_bytes_vs_fate"] = (int2["prefill"]["bytes_read"]
                                                                      / max(fate["prefill"]["bytes_read"], 1))
                if accel and "error" not in accel:
                    ratios["fate_decode_speedup_vs_accelerate"] = accel["decode_s_per_token"] / fate["decode_s_per_token"]
                    ratios["fate_prefill_speedup_vs_accelerate"] = accel["prefill_s"] / fate["prefill_s"]
                eap = group.get("eap")
                if eap and "error" not in eap:
                    ratios["fate_decode_speedup_vs_eap"] = eap["decode_s_per_token"] / fate["decode_s_per_token"]
                    ratios["fate_prefill_speedup_vs_eap"] = eap["prefill_s"] / fate["prefill_s"]
                rss_limit = 1.15 * (fate["budget_bytes"] + fate["non_expert_bytes"])
                entry["ratios"] = ratios
                entry["targets"] = {
                    "decode_within_1.25x_bound": ratios["fate_decode_over_bound"] <= 1.25,
                    "decode_3x_faster_than_accelerate": ratios.get("fate_decode_speedup_vs_accelerate", 0) >= 3,
                    "decode_not_slower_than_lod": ratios.get("fate_decode_speedup_vs_lod_paired",
                                                             ratios.get("fate_decode_speedup_vs_lod", 0)) >= 1,
                    "peak_rss_within_budget_plus_non_expert_plus_15pct":
                        fate["peak_rss_less_library_above_start_bytes"] <= rss_limit,
                    "peak_anon_rss_above_start_within_budget_plus_non_expert_plus_15pct":
                        fate["peak_anon_above_start_bytes"] <= rss_limit,
                    "rss_limit_bytes": rss_limit,
                    "peak_rss_less_library_above_start_bytes": fate["peak_rss_less_library_above_start_bytes"],
                    "peak_anon_rss_above_start_bytes": fate["peak_anon_above_start_bytes"],
                    "peak_total_rss_above_start_bytes": fate["peak_rss_above_start_bytes"],
                    "library_code_paged_in_bytes": fate["library_code_paged_in_bytes"]}
            out[regime][str(budget)] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small model, 25%% budget only, in-process (< 1 min)")
    parser.add_argument("--batches", help="Klotski mode: batch-group sizes to measure, e.g. 1,2,4,8,16, on the IO-heavy "
                        "Qwen3-VL-30B-A3B expert shape (bench/offload_batches.py)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--workdir", type=Path, help="where the model and store go (default: a temp folder)")
    parser.add_argument("--rounds", type=int, help="measure every method this many times, interleaved (default: 2, "
                        "quick 1); the machine's speed drifts, so each method's rounds are spread over the run")
    parser.add_argument("--threads", type=int, help="Klotski mode: torch compute threads (default 1; see "
                        "bench/offload_batches.py for why)")
    args = parser.parse_args()
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, not {args.threads}")
    if args.batches:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import offload_batches

        return offload_batches.main(args)
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    import logging
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")
    size = QUICK if args.quick else FULL
    started = time.perf_counter()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="offload_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir, store_dir = workdir / "model", workdir / "store"
    t0 = time.perf_counter()
    if not (model_dir / "config.json").is_file():
        write_random_checkpoint(size, model_dir)
    build_s = time.perf_counter() - t0
    from chattracker.offload import ExpertStore

    t0 = time.perf_counter()
    cli = "import sys; from chattracker.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", cli, "offload", "convert", str(model_dir), str(store_dir), "--bits", "4",
               "--cold-bits", "2"]
    manifest = store_dir / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("cold"):  # a reused --workdir
        convert_job = subprocess.CompletedProcess(command, 0)
    else:
        convert_job = subprocess.run(command, capture_output=True, text=True)  # own process: its own peak RSS
    if convert_job.returncode != 0:
        raise SystemExit(f"convert failed: {convert_job.stderr.strip().splitlines()[-1:]}")
    convert_s = time.perf_counter() - t0
    store = ExpertStore(store_dir)
    bandwidth, read_mode = storage_bandwidth(store_dir)
    rounds = args.rounds or size["rounds"]
    engine_jobs, accelerate_jobs = [], []
    for regime in ("as_built", "zipf"):
        engine_jobs.append(dict(method="resident", regime=regime, budget=1.0, budget_bytes=store.total_bytes))
        for budget in size["budgets"]:
            for method in ("fate", "lod", "eap"):
                engine_jobs.append(dict(method=method, regime=regime, budget=budget,
                                        budget_bytes=int(budget * store.total_bytes)))
            if budget == size["budgets"][0]:  # Fate's INT2 cold tail for prefill, at the judged budget only
                engine_jobs.append(dict(method="fate-int2", engine_method="fate", options={"cold_tail": COLD_TAIL},
                                        regime=regime, budget=budget, budget_bytes=int(budget * store.total_bytes)))
        # accelerate moves whole experts modules (a layer's 32 experts in float32); when not even one layer fits in
        # the largest budget, every budget gives the same device map, so it is measured once and reported for each
        layer_bytes = 3 * size["width"] * size["hidden"] * size["experts"] * 4
        accelerate_budgets = size["budgets"] if max(size["budgets"]) * store.total_bytes >= layer_bytes else [size["budgets"][0]]
        for budget in accelerate_budgets:
            accelerate_jobs.append(dict(method="accelerate", regime=regime, budget=budget,
                                        budget_bytes=int(budget * store.total_bytes),
                                        also_for=[b for b in size["budgets"] if b not in accelerate_budgets]))
        budget = size["budgets"][0]
        accelerate_jobs.append(dict(method="paired", regime=regime, budget=budget, rounds=min(rounds, PAIRED_ROUNDS),
                                    budget_bytes=int(budget * store.total_bytes)))
    # Round r runs the engine jobs rotated by r positions per regime, so no method always runs first or last; the
    # (slow, 30x-away) accelerate baseline and the paired fate / load-on-demand process run once, in the middle.
    schedule = []
    for index in range(rounds):
        for regime in ("as_built", "zipf"):
            group = [job for job in engine_jobs if job["regime"] == regime]
            shift = index * max(1, len(group) // rounds)
            schedule += group[shift:] + group[:shift]
        if index == (rounds - 1) // 2:
            schedule += accelerate_jobs
    context = None
    if not args.quick:
        import multiprocessing

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
    measured: dict[tuple, list[dict]] = {}
    paired: dict[tuple, dict] = {}
    for job in schedule:
        job = dict(job, size=size, model_dir=str(model_dir), store_dir=str(store_dir), workdir=str(workdir),
                   generate={"prefill_chunk_size": PREFILL_CHUNK})
        row = measure(job) if args.quick else run_forked(context, job)
        if job["method"] == "paired":
            paired[(job["regime"], job["budget"])] = row
            print(f"{row['regime']:8} paired     budget {row['budget']:.2f}: " + (
                ", ".join(f"{m} {1 / t:.2f}" for m, t in row["decode_s_per_token"].items()) + " decode tok/s"
                if "error" not in row else f"ERROR {row['error']}"), file=sys.stderr, flush=True)
            continue
        measured.setdefault((job["method"], job["regime"], job["budget"]), []).append(row)
        print(f"{row['regime']:8} {row['method']:10} budget {row['budget']:.2f}: "
              + (f"prefill {row['prefill_tok_s']:.1f} tok/s, decode {row['decode_tok_s']:.2f} tok/s"
                 if "error" not in row else f"ERROR {row['error']}"), file=sys.stderr, flush=True)
    rows = []
    for (method, regime, budget), group in measured.items():
        row = merge_rounds(group)
        rows.append(row)
        for other in next((j.get("also_for", []) for j in accelerate_jobs
                           if (j["method"], j["regime"], j["budget"]) == (method, regime, budget)), []):
            rows.append({**row, "budget": other, "budget_bytes": int(other * store.total_bytes),
                         "measured_at_budget": budget})
    report = {
        "mode": "quick" if args.quick else "full",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "load_average_1min_at_end": os.getloadavg()[0]},
        "model": {"class": "Qwen3VLMoeForConditionalGeneration (random weights)", **{k: size[k] for k in (
            "hidden", "width", "layers", "experts", "top_k", "prompt", "decode", "accelerate_decode")},
                  "image_tokens": size["image_side"] ** 2 // 4, "expert_store_bytes": store.total_bytes,
                  "bytes_per_expert": store.expert_bytes, "quantization": "INT4 g64 (asymmetric min/max, bf16 scale/zero)",
                  "cold_tier": "INT2 g32 (fp16 scale/min)", "cold_bytes_per_expert": store.cold.expert_bytes},
        "decode_sampling": "do_sample with a fixed seed (top_k=0, temperature 1): identical tokens for fate/lod/eap/resident",
        "page_cache": f"engine expert reads: {read_mode} (bandwidth measured through the same path); accelerate's "
                      "offload folder and checkpoint pages dropped (POSIX_FADV_DONTNEED) after every experts forward",
        "rounds": rounds, "prefill_chunk_size": PREFILL_CHUNK,
        "timing": "decode s/token: median of every decode step of every round; prefill: median round",
        "memory": "peak above the process's memory after imports. The target uses total RSS less shared-library code "
                  "(*.so pages that the first use of each torch kernel brings in; read from /proc/self/smaps at the "
                  "start of each window: load, warm-up, measured generate, so it can only overcount); also reported: "
                  "anon (heap, tensors, expert slots) and total RSS including library code",
        "zipf_exponent": ZIPF_EXPONENT,
        "fate_int2": f"fate with its prefill cold tail: the least-demanded experts covering {COLD_TAIL:.0%} of a "
                     "prefill pass's assignments are read from the store's INT2 g32 tier when not present",
        "storage_read_bytes_per_s": bandwidth,
        "build_s": build_s, "convert_s": convert_s,
        "convert_peak_rss_bytes": store.manifest["convert"]["peak_rss_bytes"],
        "summary": summarize(rows, bandwidth, size["budgets"], paired),
        "runs": rows,
        "wall_s": time.perf_counter() - started,
    }
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
