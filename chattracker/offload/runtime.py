"""Serve a transformers MoE model's experts from the store: the engine, its IO threads and the experts module.

Each ``<block>.experts`` module of the model is replaced by :class:`OffloadedExperts`, which keeps the stock call
``experts(hidden_states, top_k_index, top_k_weights)``, so the router, the rest of the block and ``generate()`` are
unchanged. The experts module asks the engine for the experts the router chose, computes the ones already resident
first while the rest arrive, and lets the predictor queue loads for the next layer before computing.
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import re
import threading
import time
from collections import deque
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from chattracker.offload.cache import BudgetError, ExpertCache, allocate
from chattracker.offload.coactivation import CoactivationPredictor, CoactivationTable
from chattracker.offload.prefetch import ActivationPathPredictor, FatePredictor, Predictor
from chattracker.offload.quant import qlinear
from chattracker.offload.stats import EngineStats
from chattracker.offload.store import ExpertStore, ExpertStoreError

log = logging.getLogger(__name__)

METHODS = {
    # method: (allocation, eviction policy, predictor, overlap). overlap: a layer's missing experts are requested all
    # at once and the present ones are computed while they arrive (Fate); without it a miss is read when its turn
    # comes and compute waits for it, which is what load-on-demand means in Fate's and MoE-Infinity's comparisons.
    "fate": ("shallow", "arc", "fate", True),
    "lod": ("even", "lru", "none", False),
    "lod-overlap": ("even", "lru", "none", True),  # ablation: load-on-demand plus Fate's compute/IO overlap
    "eap": ("even", "lru", "eap", True),
    "resident": ("even", "lru", "none", True),
    # Klotski: several sequences go through each layer together (a padded batch); prefetch from Fate's gate pooled
    # over the group plus the calibrated layer-to-layer co-activation table; the planner picks the cache split
    "klotski": ("shallow", "arc", "klotski", True),
}
GATED = ("fate", "klotski")  # predictors whose single-sequence decode reads ahead under Fate's waste controls
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
          "g": 1e9, "gb": 1e9, "gib": 2**30}


def parse_budget(value: int | float | str, total_bytes: int) -> int:
    """Bytes from 123456, "4GiB", "512MB", "25%" or a share 0 < f <= 1 ("0.25") of the store's expert bytes."""
    examples = "examples: 4GiB, 512MB, 25%, 0.25"
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        match = re.fullmatch(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(%|[a-z]*)", text)
        if not match or (match[2] != "%" and match[2] not in _UNITS):
            raise BudgetError(f"cannot read expert budget {value!r} ({examples})")
        number, unit = float(match[1]), match[2]
        if unit == "%":
            if not 0 < number <= 100:
                raise BudgetError(f"expert budget {value!r} must be a share in (0%, 100%]")
            return int(number / 100 * total_bytes)
        if unit == "" and "." in match[1]:  # a bare fraction is the share form the help shows, not bytes
            if not 0 < number <= 1:
                raise BudgetError(f"expert budget {value!r}: a number with a point is a share in (0, 1]; "
                                  f"give bytes as a whole number or with a unit ({examples})")
            return int(number * total_bytes)
        return int(number * _UNITS[unit])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise BudgetError(f"cannot read expert budget {value!r} ({examples})")
    if isinstance(value, float) and value <= 1:
        return int(value * total_bytes)
    return int(value)


class _IOPool:
    """Background readers. Jobs are ordered by (layer call they are for, demand before prefetch, rank)."""

    def __init__(self, engine: "OffloadEngine", threads: int) -> None:
        self.engine = engine
        self.jobs: queue.PriorityQueue = queue.PriorityQueue()
        self.sequence = itertools.count()
        self.load_seconds = 0.0  # moving average of one expert's read time
        self.threads = [threading.Thread(target=self._work, daemon=True, name=f"expert-io-{i}") for i in range(threads)]
        for thread in self.threads:
            thread.start()

    def submit(self, entry, target_call: int, demand: bool, rank: int = 0) -> None:
        self.jobs.put((target_call, 0 if demand else 1, rank, next(self.sequence), entry))

    def close(self) -> None:
        while True:  # pending reads are moot once the engine closes (e.g. a failed preload)
            try:
                self.jobs.get_nowait()
            except queue.Empty:
                break
        for _ in self.threads:
            self.jobs.put((float("inf"), 0, 0, next(self.sequence), None))
        for thread in self.threads:
            thread.join(timeout=5)

    def _work(self) -> None:
        engine = self.engine
        while True:
            entry = self.jobs.get()[-1]
            if entry is None:
                return
            start = time.perf_counter()
            try:
                buffer = engine.store.read_into(entry.layer, entry.expert, engine.cache.buffer(entry), entry.cold)
                data = engine.to_device(engine.store.parse(buffer, entry.cold))
            except BaseException as error:  # reported to whoever needs the expert, not swallowed
                engine.cache.complete(entry, None, error)
                continue
            seconds = time.perf_counter() - start
            with engine.stats.lock:
                engine.stats.bytes_read += len(buffer)
                engine.stats.io_busy_s += seconds
                if entry.cold:
                    engine.stats.loads_cold += 1
                    engine.stats.bytes_read_cold += len(buffer)
                if entry.prefetched:
                    engine.stats.loads_prefetch += 1
                else:
                    engine.stats.loads_demand += 1
            if not entry.cold:  # the decode read-ahead budget is in full-precision reads
                self.load_seconds = seconds if not self.load_seconds else 0.8 * self.load_seconds + 0.2 * seconds
            engine.cache.complete(entry, data)


class OffloadEngine:
    """Store + budgeted cache + IO threads + predictor, shared by all offloaded experts modules of one model."""

    def __init__(self, store: ExpertStore, budget_bytes: int, method: str = "fate", *, allocation: str | None = None,
                 policy: str | None = None, prefetch: str | None = None, overlap: bool | None = None,
                 io_threads: int = 2, resident_layers: int = 4, top_k: int | None = None,
                 device: str | torch.device = "cpu", min_precision: float = 0.5, cold_tail: float = 0.0,
                 adaptive_gate: bool = True) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown offload method {method!r}; choose from {', '.join(METHODS)}")
        default_allocation, default_policy, default_prefetch, default_overlap = METHODS[method]
        self.overlap = default_overlap if overlap is None else overlap
        self.method, self.store = method, store
        if not 0 <= cold_tail < 1:
            raise ValueError(f"cold_tail is a share of a prefill's expert assignments in [0, 1), not {cold_tail!r}")
        if cold_tail:
            store.tier(cold=True)  # a clear error now if the store has no cold tier
        self.cold_tail = cold_tail
        self.device = torch.device(device)
        if method == "resident":
            budget_bytes = max(budget_bytes, store.total_bytes)
        self.budget_bytes = budget_bytes
        self.top_k = top_k or store.manifest["top_k"]
        self.stats = EngineStats()
        self.capacities = allocate(budget_bytes, store.expert_bytes, store.layers, store.num_experts,
                                   allocation or default_allocation, resident_layers)
        self.cache = ExpertCache(self.capacities, store.expert_bytes, budget_bytes, policy or default_policy, self.stats)
        self.prefetch_name = prefetch or default_prefetch
        self.predictor: Predictor = Predictor()
        self.io = _IOPool(self, io_threads)
        self.calls = 0  # MoE layer calls so far; orders IO jobs
        self.pending: dict[int, tuple[set[int], list[int]]] = {}  # position -> prediction awaiting the router
        self.rank_counts: dict[int, list[list[int]]] = {}  # layer -> per decode rank [predictions, right]
        self.issued: dict[int, list[int]] = {}  # position -> experts actually read ahead for it (decode)
        self.issued_counts: dict[int, list[float]] = {}  # layer -> decayed [prefetches read, of those used]
        self.skipped: dict[int, int] = {}  # layer -> read-ahead rounds paused since the last probe
        self.min_precision = min_precision
        self.adaptive_gate = adaptive_gate
        self.gate_seconds = 0.0  # moving average time of one decode prediction (the next layer's router call)
        self.useful: dict[int, list[float]] = {}  # layer -> [decode rounds seen, decayed reads ahead used per round]
        self.gate_skipped: dict[int, int] = {}  # layer -> prediction rounds skipped since the last probe
        self.layer_seconds = 0.0  # moving average time from one decode MoE layer to the next
        self._last_entry: tuple[int, float, float, int] | None = None  # position, time, io wait, experts used
        self._in_prefill = False  # the last layer-0 call had several tokens (a prefill, or a chunk of one)
        self.step_length: int | None = None  # tokens per sequence in the model call under way (set by begin_step)
        self.compute_log: list[tuple[int, int, bool, int]] | None = None  # a list: (layer, expert, present, tokens)
        self.routing_log: list[tuple[int, torch.Tensor]] | None = None  # a list: (position, top_k_index) per call
        # (tokens, experts of the previous layer, seconds) per pair of consecutive MoE calls: that layer's expert
        # compute plus the next layer's dense part, IO waits taken out; the planner fits its compute model to them
        self.compute_samples: deque[tuple[int, int, float]] = deque(maxlen=4096)
        self.copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    # ---- set-up ---------------------------------------------------------------------------------------------
    def attach(self, blocks: list[tuple[int, nn.Module]]) -> None:
        """Replace each block's experts module; ``blocks`` are (layer index, sparse MoE block) in order."""
        layers = [layer for layer, _ in blocks]
        if layers != self.store.layers:
            raise ExpertStoreError(f"store {self.store.root} has MoE layers {self.store.layers}, the model has {layers}")
        gates = []
        for position, (layer, block) in enumerate(blocks):
            block.experts = OffloadedExperts(self, position, layer, block.experts.act_fn)
            gates.append(block.gate)
        if self.prefetch_name == "fate":
            self.predictor = FatePredictor(gates, self.store.num_experts)
        elif self.prefetch_name == "klotski":
            table = CoactivationTable.load(self.store)
            if table is None:
                log.info("store %s has no co-activation table (coactivation.calibrate builds one); "
                         "prefetching from the cross-layer gate alone", self.store.root)
            self.predictor = CoactivationPredictor(gates, self.store.num_experts, table)
        elif self.prefetch_name == "eap":
            self.predictor = ActivationPathPredictor(len(layers), self.store.num_experts, self.top_k)
        elif self.prefetch_name != "none":
            raise ValueError(f"unknown prefetch {self.prefetch_name!r}")

    def preload(self) -> None:
        """Load every layer whose capacity holds all its experts (shallow-resident layers; all of them if resident)."""
        layers = [layer for layer, capacity in self.capacities.items() if capacity >= self.store.num_experts]
        entries = []
        for layer in layers:
            for expert in range(self.store.num_experts):
                entry = self.cache.reserve(layer, expert, prefetch=True)
                entry.used = True  # not a speculative load: never counted as an unused prefetch
                self.io.submit(entry, -1, demand=True)
                entries.append(entry)
        for entry in tqdm(entries, desc="loading resident experts", unit="expert", disable=not entries):
            self._wait(entry)
        self.stats.reset()

    def to_device(self, tensors: dict) -> dict:
        """Host tensors as parsed; on CUDA, copied through pinned memory on a side stream (event recorded)."""
        if self.copy_stream is None:
            return tensors
        out = {}
        with torch.cuda.stream(self.copy_stream):
            for matrix, parts in tensors.items():
                out[matrix] = {name: t.pin_memory().to(self.device, non_blocking=True) for name, t in parts.items()}
            event = torch.cuda.Event()
            event.record(self.copy_stream)
        out["_event"] = event
        return out

    def close(self) -> None:
        self.io.close()

    def begin_step(self, tokens_per_sequence: int | None) -> None:
        """A model call starts with this many tokens per sequence (1: a decode step, whatever the batch size).

        Without it a call of several tokens counts as a prefill, which is wrong for a batched decode step."""
        self.step_length = tokens_per_sequence

    # ---- the MoE layer call ---------------------------------------------------------------------------------
    def _wait(self, entry) -> None:
        with self.cache.cond:
            self.cache.cond.wait_for(lambda: entry.ready or entry.error is not None)
        if entry.error is not None:
            raise entry.error

    def run(self, position: int, layer: int, act_fn, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
            top_k_weights: torch.Tensor) -> torch.Tensor:
        now = time.perf_counter()
        tokens = hidden_states.shape[0]
        prefill = tokens > 1 if self.step_length is None else self.step_length > 1
        if self._last_entry is not None and self._last_entry[0] == position - 1:
            # compute time of one layer: the gap between MoE calls minus the time spent blocked on IO in between
            gap = now - self._last_entry[1] - (self.stats.io_wait_s - self._last_entry[2])
            if tokens == 1:
                self.layer_seconds = gap if not self.layer_seconds else 0.8 * self.layer_seconds + 0.2 * gap
            if not prefill:
                self.compute_samples.append((tokens, self._last_entry[3], gap))
        call = self.calls = self.calls + 1
        if position == 0 and prefill and not self._in_prefill:
            self.predictor.begin_request()  # a new prompt; later chunks of a chunked prefill continue it
        if position == 0:
            self._in_prefill = prefill
        num_experts = self.store.num_experts
        flat = top_k_index.reshape(-1)
        demand = torch.bincount(flat[flat < num_experts], minlength=num_experts)
        # Klotski's order: most-demanded first (resident ones are computed before any that must still arrive)
        used = [e for e in torch.argsort(demand, descending=True, stable=True).tolist() if demand[e] > 0]
        self._last_entry = (position, now, self.stats.io_wait_s, len(used))
        if self.routing_log is not None:
            self.routing_log.append((position, top_k_index.detach().clone()))
        predicted = self.pending.pop(position, None)
        if predicted is not None:
            predicted_set, ranking = predicted
            self.stats.record_prediction(layer, predicted_set, set(used))
            counts = self.rank_counts.setdefault(layer, [[0, 0] for _ in range(self.store.num_experts)])
            chosen = set(used)
            for rank, expert in enumerate(ranking):
                counts[rank][0] += 1
                counts[rank][1] += expert in chosen
        issued = self.issued.pop(position, None)
        if tokens == 1 and predicted is not None:
            seen, rate = self.useful.get(layer, (0, 0.0))
            used_ahead = sum(e in used for e in issued) if issued else 0
            self.useful[layer] = [seen + 1, 0.9 * rate + 0.1 * used_ahead]
        if issued:
            # Only the reads actually made count here: a right guess of an expert already cached saves nothing,
            # so a rank can look precise while every read it causes is wasted (random routing, warm cache).
            read, right = self.issued_counts.setdefault(layer, [0.0, 0.0])
            self.issued_counts[layer] = [0.9 * read + len(issued), 0.9 * right + sum(e in used for e in issued)]
        self.predictor.observe(position, top_k_index)

        cold: set[int] = set()
        if prefill and self.cold_tail:
            cold = self._cold_tail(used, [int(demand[e]) for e in used])
        ready, waiting, missing = deque(), [], deque()
        for expert in used:
            entry = self.cache.lookup(layer, expert, cold_ok=prefill)
            if entry is None:
                missing.append(expert)
            elif entry.ready:
                ready.append(entry)
            else:
                waiting.append(entry)
        self.cache.judge_prefetches(layer)
        with self.stats.lock:
            layer_stats = self.stats.layers[layer]
            layer_stats.demanded += len(used)
            layer_stats.hits += len(ready)
            layer_stats.late_hits += len(waiting)
            layer_stats.misses += len(missing)
        if self.overlap:
            self._issue_demand(layer, call, missing, waiting, cold)
        self._prefetch(position, call, hidden_states)

        # one row per (token, top-k slot), summed in slot order at the end: the result does not depend on the order
        # in which experts are computed (it varies with what is cached), so a batched run gives each sequence the
        # bits it gets alone
        output = hidden_states.new_zeros(hidden_states.shape[0], top_k_index.shape[-1], hidden_states.shape[-1])
        present = {entry.expert for entry in ready}
        while ready or waiting or missing:
            if not ready and not waiting:
                # overlap: every slot is taken by loads still in flight (e.g. wrong prefetches); otherwise the present
                # experts are done and the next miss is read now, while nothing else runs
                if self.overlap or not self._issue_demand(layer, call, missing, waiting, cold, limit=1):
                    start = time.perf_counter()
                    self.cache.wait_for_slot(layer)
                    self.stats.io_wait_s += time.perf_counter() - start
                    if self.overlap:
                        self._issue_demand(layer, call, missing, waiting, cold)
                continue
            if not ready:
                start = time.perf_counter()
                with self.cache.cond:
                    self.cache.cond.wait_for(lambda: any(e.ready or e.error is not None for e in waiting))
                self.stats.io_wait_s += time.perf_counter() - start
                for entry in [e for e in waiting if e.ready or e.error is not None]:
                    waiting.remove(entry)
                    if entry.error is not None:
                        self.cache.unpin(entry)
                        raise entry.error
                    ready.append(entry)
            entry = ready.popleft()
            if self.compute_log is not None:
                self.compute_log.append((layer, entry.expert, entry.expert in present, int(demand[entry.expert])))
            try:
                self._compute(entry, act_fn, hidden_states, top_k_index, top_k_weights, output)
            finally:
                self.cache.unpin(entry)
            if self.overlap:
                self._issue_demand(layer, call, missing, waiting, cold)
        return output.sum(dim=1)

    def _issue_demand(self, layer: int, call: int, missing: deque, waiting: list, cold: set[int],
                      limit: int | None = None) -> int:
        """Claim slots for (up to ``limit``) missing experts, those in ``cold`` from the cold tier; with a small budget
        the rest wait until computed ones are unpinned. Returns how many moved to ``waiting``."""
        moved = 0
        while missing and (limit is None or moved < limit):
            entry = self.cache.reserve(layer, missing[0], prefetch=False, cold=missing[0] in cold)
            if entry is None:
                present = self.cache.lookup(layer, missing[0])  # raced with a prefetch that claimed it meanwhile
                if present is None:
                    return moved
                entry = present
            else:
                self.io.submit(entry, call, demand=True)
            missing.popleft()
            waiting.append(entry)
            moved += 1
        return moved

    def _prefetch(self, position: int, call: int, hidden_states: torch.Tensor) -> None:
        decode = hidden_states.shape[0] == 1
        if decode and position + 1 < len(self.store.layers) and self._gate_does_not_pay(self.store.layers[position + 1]):
            return
        start = time.perf_counter()
        prediction = self.predictor.predict(position, hidden_states)
        if prediction is None:
            return
        if decode:
            seconds = time.perf_counter() - start
            self.gate_seconds = seconds if not self.gate_seconds else 0.9 * self.gate_seconds + 0.1 * seconds
        layer = self.store.layers[position + 1]
        self.pending[position + 1] = (prediction.predicted, [] if prediction.pooled else
                                      prediction.ranking[: self.capacities[layer]])
        capacity = self.capacities[layer]
        if capacity >= self.store.num_experts and all(
                (layer, e) in self.cache.entries for e in range(self.store.num_experts)):
            return
        cold = set()
        if prediction.pooled:
            limit = capacity
            if self.cold_tail and prediction.counts:
                cold = self._cold_tail(prediction.ranking, prediction.counts)
        else:
            limit = min(self.top_k, capacity)
            if self.prefetch_name in GATED and self.io.load_seconds and self.layer_seconds:
                # Fate decode: beyond the predicted top-k, runner-ups only while the loads still fit in one layer's
                # compute time; loads that cannot arrive in time would only delay the real misses and evict
                missing = sum((layer, e) not in self.cache.entries for e in prediction.ranking[:limit])
                spare = int(self.layer_seconds / self.io.load_seconds) - missing
                limit = min(capacity, limit + max(0, spare))
        # predicted experts already present count as referenced, so this layer's prefetches evict others first
        self.cache.touch(layer, prediction.ranking[:limit])
        counts = self.rank_counts.get(layer) if self.prefetch_name in GATED and not prediction.pooled else None
        if counts is not None and self._reads_ahead_wasted(layer):
            return
        issued = self.issued.setdefault(position + 1, []) if counts is not None else None
        for rank, expert in enumerate(prediction.ranking[:limit]):
            if counts and counts[rank][0] >= 8 and counts[rank][1] < self.min_precision * counts[rank][0]:
                # this rank has been right less often than min_precision: fetching it would mostly waste a read
                # (bandwidth, and CPU on a small machine) that a demand load avoids when the guess is wrong
                continue
            entry = self.cache.reserve(layer, expert, prefetch=True, cold=expert in cold)
            if entry is not None:
                self.io.submit(entry, call + 1, demand=False, rank=rank)
                if issued is not None:
                    issued.append(expert)

    def _cold_tail(self, experts: list[int], counts: list[int]) -> set[int]:
        """Fate's prefill cold tail: the least-demanded experts that together take at most ``cold_tail`` of the
        token assignments, read at the cold tier's precision (fewer bytes) when they are not already present."""
        allowed, taken, cold = self.cold_tail * sum(counts), 0, set()
        for count, expert in sorted(zip(counts, experts)):
            if taken + count > allowed:
                break
            taken += count
            cold.add(expert)
        return cold

    def _gate_does_not_pay(self, layer: int) -> bool:
        """Fate decode: skip predicting ``layer`` while its predictions save less time than they cost.

        A prediction costs one router call (measured: ``gate_seconds``; on a CPU machine it runs on the cores the
        model needs) and saves a read wait only when it reads ahead an expert the router then uses: that is, when the
        expert was not cached. With a warm cache (skewed routing, or a budget near the working set) almost every
        right guess names an expert already present, so the saving per round (reads ahead used per round x one
        read's time) falls below the router call. Judged after 16 decode rounds of the layer; one round in 8 still
        predicts, so a change of routing is noticed."""
        if not self.adaptive_gate or self.prefetch_name not in GATED or not self.io.load_seconds or not self.gate_seconds:
            return False
        seen, rate = self.useful.get(layer, (0, 0.0))
        if seen < 16 or rate * self.io.load_seconds >= self.gate_seconds:
            return False
        if _probe_round(self.gate_skipped, layer, every=8):
            return False
        self.stats.gate_skips += 1
        return True

    def _reads_ahead_wasted(self, layer: int) -> bool:
        """Fate decode: stop reading ahead for a layer whose recent reads ahead were mostly unused.

        On a small CPU machine a wasted read costs compute time, and a demand load costs no more than a right
        read ahead saves. One round in 16 still reads ahead, so the estimate follows a change of routing."""
        read, right = self.issued_counts.get(layer, (0.0, 0.0))
        if read < 4 or right >= self.min_precision * read:
            return False
        return not _probe_round(self.skipped, layer, every=16)

    def _compute(self, entry, act_fn, hidden_states, top_k_index, top_k_weights, output) -> None:
        data = entry.data
        if "_event" in data:
            torch.cuda.current_stream(self.device).wait_event(data["_event"])
        spec, shapes = self.store.tier(entry.cold).spec, self.store.shapes
        if hidden_states.shape[0] == 1:  # decode: one token, no gather/scatter (saves ~0.1 ms of overhead per expert)
            slot = top_k_index[0].tolist().index(entry.expert)
            gate, up = qlinear(hidden_states, data["gate_up"], spec, shapes["gate_up"]).chunk(2, dim=-1)
            result = qlinear(act_fn(gate) * up, data["down"], spec, shapes["down"])
            output[0, slot] = (result[0] * top_k_weights[0, slot]).to(output.dtype)
            return
        token_index, slot = torch.where(top_k_index == entry.expert)
        states = hidden_states[token_index]
        gate, up = qlinear(states, data["gate_up"], spec, shapes["gate_up"]).chunk(2, dim=-1)
        result = qlinear(act_fn(gate) * up, data["down"], spec, shapes["down"])
        result = result * top_k_weights[token_index, slot, None]
        output[token_index, slot] = result.to(output.dtype)


def _probe_round(paused: dict[int, int], layer: int, every: int) -> bool:
    """While something is paused for ``layer``: True one round in ``every`` (a probe that refreshes the estimate)."""
    paused[layer] = paused.get(layer, 0) + 1
    if paused[layer] >= every:
        paused[layer] = 0
        return True
    return False


class OffloadedExperts(nn.Module):
    """Drop-in for a transformers experts module (same call signature); weights come from the engine."""

    def __init__(self, engine: OffloadEngine, position: int, layer: int, act_fn) -> None:
        super().__init__()
        self.position, self.layer, self.act_fn = position, layer, act_fn
        self.num_experts = engine.store.num_experts
        object.__setattr__(self, "engine", engine)  # not a submodule: keeps it out of state_dict / .to()

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor) -> torch.Tensor:
        return self.engine.run(self.position, self.layer, self.act_fn, hidden_states, top_k_index, top_k_weights)

    def extra_repr(self) -> str:
        return f"layer={self.layer}, num_experts={self.num_experts}, served from {self.engine.store.root}"


def moe_blocks(model: nn.Module) -> list[tuple[int, nn.Module]]:
    """(decoder layer index, block) for every module holding a router ``gate`` and an ``experts`` collection."""
    blocks = []
    for name, module in model.named_modules():
        experts = getattr(module, "experts", None)
        if experts is not None and hasattr(module, "gate") and hasattr(experts, "act_fn"):
            match = re.search(r"layers\.(\d+)\.", name + ".")
            if match:
                blocks.append((int(match[1]), module))
    return sorted(blocks, key=lambda item: item[0])


def describe_store(store_dir: str | Path) -> dict:
    """Summary of a store for `chattracker offload info`."""
    store = ExpertStore(store_dir)
    manifest = store.manifest
    return {"store": str(store.root), "model_type": manifest["model_type"], "architectures": manifest["architectures"],
            "moe_layers": len(store.layers), "experts_per_layer": store.num_experts, "top_k": manifest["top_k"],
            "hidden_size": manifest["hidden_size"], "expert_width": manifest["expert_width"],
            "quantization": manifest["quantization"], "expert_bytes": store.expert_bytes,
            "cold_tier": ({"quantization": store.cold.spec.__dict__, "expert_bytes": store.cold.expert_bytes}
                          if store.cold else None),
            "total_expert_bytes": store.total_bytes, "convert": manifest.get("convert")}
