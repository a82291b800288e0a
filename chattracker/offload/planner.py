"""Klotski's constraint-sensitive planner: the batch-group size n and the per-layer cache split.

From measurements, not guesses: the read bandwidth of the store (``measure_bandwidth``) and a compute model fitted to
the engine's own timings of consecutive MoE calls (``ComputeModel.fit`` over ``engine.compute_samples``). For each n
and each number of shallow layers kept whole, a decode step is estimated layer by layer: a group of n sequences
needs E(1 - (1 - k/E)^n) distinct experts per layer (routing taken as uniform), of which a layer holding c slots has
c/E; the rest is read. Reads of layer p+1 are prefetched during layer p's compute, so a layer costs
max(compute, read); the first MoE layer cannot be predicted and costs compute + read. The planner picks the
smallest n whose compute hides its reads (Klotski), unless a larger n is estimated more than 10% faster.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field

import torch

from chattracker.offload.cache import allocate
from chattracker.offload.store import ExpertStore, aligned_buffer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComputeModel:
    """Seconds from one MoE call to the next: ``fixed + per_token * tokens + per_expert * distinct experts``."""

    fixed: float
    per_token: float
    per_expert: float

    def seconds(self, tokens: float, experts: float) -> float:
        return self.fixed + self.per_token * tokens + self.per_expert * experts

    @classmethod
    def fit(cls, samples) -> "ComputeModel":
        """Least squares over (tokens, experts, seconds) samples; a term fitted negative is dropped and refitted."""
        rows = [(t, e, s) for t, e, s in samples if s > 0]
        if len(rows) < 3:
            raise ValueError(f"the compute model needs at least 3 timed MoE calls, got {len(rows)}")
        data = torch.tensor(rows, dtype=torch.float64)
        design, target = torch.stack([torch.ones(len(rows)), data[:, 0], data[:, 1]], dim=1), data[:, 2:]
        keep = [0, 1, 2]
        while True:
            solution = torch.linalg.lstsq(design[:, keep], target).solution.reshape(-1)
            negative = [keep[i] for i, value in enumerate(solution.tolist()) if value < 0]
            if not negative or len(keep) == 1:
                break
            keep = [i for i in keep if i != negative[0]]
        values = [0.0, 0.0, 0.0]
        for index, value in zip(keep, solution.tolist()):
            values[index] = max(0.0, value)
        return cls(*values)


def measure_bandwidth(store: ExpertStore, reads: int = 32, threads: int = 2) -> float:
    """Bytes per second reading distinct expert files the way the engine does (page cache bypassed), ``threads``
    at a time."""
    keys = [(layer, expert) for layer in store.layers for expert in range(store.num_experts)][:reads]
    buffers = [aligned_buffer(store.slot_bytes) for _ in range(threads)]
    done = [0]

    def work(worker: int) -> None:
        for layer, expert in keys[worker::threads]:
            done[0] += len(store.read_into(layer, expert, buffers[worker]))

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return done[0] / max(time.perf_counter() - start, 1e-9)


def distinct_experts(group: int, num_experts: int, top_k: int) -> float:
    """Expected distinct experts ``group`` tokens pick at one layer, each choosing ``top_k`` uniformly."""
    return num_experts * (1 - (1 - top_k / num_experts) ** group)


@dataclass
class Estimate:
    """One (n, cache split) candidate: a decode step's compute and reads, and the throughput they allow."""

    group: int
    resident_layers: int
    compute_s: float  # one decode step, all layers
    read_s: float  # bytes the step reads / bandwidth
    step_s: float  # with prefetch overlap (first layer serial)
    tokens_per_s: float
    hidden: bool  # every predicted layer's (all but the first) reads fit in the previous layer's compute


@dataclass
class Plan:
    """What the planner chose, the capacities that follow, and why (also every candidate it weighed)."""

    group: int
    resident_layers: int
    capacities: dict[int, int]
    reason: str
    bandwidth: float
    compute: ComputeModel
    estimates: list[Estimate] = field(default_factory=list)

    def engine_options(self) -> dict:
        """Options for :class:`OffloadEngine` (or ``load_offloaded_model``) that realise this cache split."""
        return {"allocation": "shallow", "resident_layers": self.resident_layers}

    def to_json(self) -> dict:
        return {"group": self.group, "resident_layers": self.resident_layers, "reason": self.reason,
                "bandwidth_bytes_per_s": self.bandwidth, "compute_model": asdict(self.compute),
                "capacities": {str(k): v for k, v in self.capacities.items()},
                "estimates": [asdict(e) for e in self.estimates]}


def estimate(store: ExpertStore, capacities: dict[int, int], group: int, top_k: int, compute: ComputeModel,
             bandwidth: float, resident_layers: int) -> Estimate:
    """A decode step of ``group`` sequences under ``capacities`` (see the module docstring for the model)."""
    experts = distinct_experts(group, store.num_experts, top_k)
    layer_compute = compute.seconds(group, experts)
    step = total_compute = total_read = 0.0
    hidden = True
    for position, layer in enumerate(store.layers):
        read = experts * (1 - capacities[layer] / store.num_experts) * store.expert_bytes / bandwidth
        total_compute += layer_compute
        total_read += read
        if position == 0:
            step += layer_compute + read  # unpredictable: only a resident first layer avoids this wait
        else:
            step += max(layer_compute, read)
            hidden = hidden and read <= layer_compute
    return Estimate(group, resident_layers, total_compute, total_read, step, group / step, hidden)


def plan(store: ExpertStore, budget_bytes: int, compute: ComputeModel, bandwidth: float, max_group: int,
         top_k: int | None = None, resident_choices: range = range(0, 5), margin: float = 0.9) -> Plan:
    """The smallest group size that hides the reads (within ``margin`` of the best estimate), and its best split."""
    top_k = top_k or store.manifest["top_k"]
    if max_group < 1:
        raise ValueError("max_group must be at least 1")
    best_per_group: dict[int, tuple[Estimate, dict[int, int]]] = {}
    weighed: list[Estimate] = []
    for group in range(1, max_group + 1):
        for resident in resident_choices:
            # allocate may keep fewer layers whole than asked (small budget); the estimate uses what it kept
            capacities = allocate(budget_bytes, store.expert_bytes, store.layers, store.num_experts, "shallow", resident)
            result = estimate(store, capacities, group, top_k, compute, bandwidth, resident)
            weighed.append(result)
            current = best_per_group.get(group)
            # per group: a split that hides the reads first, then the fastest
            if current is None or (result.hidden, result.tokens_per_s) > (current[0].hidden, current[0].tokens_per_s):
                best_per_group[group] = (result, capacities)
    best = max(best_per_group.values(), key=lambda item: item[0].tokens_per_s)[0]
    good_enough = [g for g, (e, _) in sorted(best_per_group.items()) if e.tokens_per_s >= margin * best.tokens_per_s]
    hiding = [g for g, (e, _) in sorted(best_per_group.items()) if e.hidden]
    chosen_group = next((g for g in hiding if g in good_enough), good_enough[0])
    chosen, capacities = best_per_group[chosen_group]
    whole = sum(1 for c in capacities.values() if c >= store.num_experts)
    step_ms, read_ms = 1e3 * chosen.step_s, 1e3 * chosen.read_s
    if chosen.hidden:
        why = (f"n={chosen_group} is the smallest group whose layer compute hides its expert reads "
               f"(step {step_ms:.1f} ms, reads {read_ms:.1f} ms at {bandwidth / 1e6:.0f} MB/s)")
    elif hiding:
        why = (f"n={chosen_group}: smaller groups leave reads exposed; it is within {100 * (1 - margin):.0f}% of the "
               f"best estimate (n={best.group}, {best.tokens_per_s:.1f} tok/s)")
    else:
        why = (f"no group up to {max_group} hides the reads (n={chosen_group}: compute {1e3 * chosen.compute_s:.1f} ms "
               f"vs reads {read_ms:.1f} ms per step at {bandwidth / 1e6:.0f} MB/s); n={chosen_group} is the smallest "
               f"within {100 * (1 - margin):.0f}% of the best estimate")
    reason = (f"{why}; estimated {chosen.tokens_per_s:.1f} tokens/s; cache split: {whole} shallow layer(s) whole, "
              f"the rest {min(capacities.values())}-{max(c for c in capacities.values())} slots per layer "
              f"(best estimate of {len(resident_choices)} splits)")
    log.info("planner: %s", reason)
    return Plan(chosen_group, chosen.resident_layers, capacities, reason, bandwidth, compute, weighed)
