"""The byte-budgeted expert cache: per-layer slots, ARC or LRU eviction, pins for experts in use or in flight.

Bytes are reserved when a load is issued, not when it lands, so in-flight buffers count against the budget too and
the resident total can never exceed it. The memory itself is one arena of fixed slots allocated up front: a load
reads straight into its slot, so serving experts allocates nothing per read and cannot fragment the heap, and the
process never holds more expert memory than the slots. Slots start on page boundaries (O_DIRECT reads land in
them), so each costs its expert's bytes rounded up to 4 KiB: under 0.2% more for real experts (megabytes each).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from chattracker.errors import ChatTrackerError
from chattracker.offload.stats import EngineStats
from chattracker.offload.store import align_up, aligned_buffer

log = logging.getLogger(__name__)


class BudgetError(ChatTrackerError):
    """The expert budget cannot hold what the model needs."""


def allocate(budget_bytes: int, expert_bytes: int, layers: list[int], num_experts: int, mode: str = "shallow",
             resident_layers: int = 4, resident_share: float = 0.5) -> dict[int, int]:
    """Slots per MoE layer. "shallow": the first layers whole (Fate), the rest split evenly; "even": all split evenly.

    Shallow layers may take at most ``resident_share`` of the budget, so a small budget still leaves every deeper
    layer room for at least a few experts.
    """
    slots = budget_bytes // expert_bytes
    if slots < len(layers):
        raise BudgetError(f"expert budget {budget_bytes} bytes holds {slots} experts; at least one per MoE layer "
                          f"({len(layers)} x {expert_bytes} = {len(layers) * expert_bytes} bytes) is needed")
    if slots >= len(layers) * num_experts:
        return {layer: num_experts for layer in layers}
    whole = 0
    if mode == "shallow":
        whole = min(resident_layers, int(resident_share * slots) // num_experts, len(layers) - 1)
        while whole and slots - whole * num_experts < len(layers) - whole:
            whole -= 1
    elif mode != "even":
        raise ValueError(f"unknown allocation {mode!r}")
    capacities = {layer: num_experts for layer in layers[:whole]}
    rest = layers[whole:]
    share, extra = divmod(slots - whole * num_experts, len(rest))
    for position, layer in enumerate(rest):
        capacities[layer] = min(num_experts, share + (1 if position < extra else 0))
    return capacities


class LRUPolicy:
    """Least recently used first."""

    def __init__(self, capacity: int) -> None:
        self.order: OrderedDict[int, None] = OrderedDict()

    def touch(self, key: int) -> None:
        self.order.move_to_end(key)

    def insert(self, key: int) -> None:
        self.order[key] = None

    def discard(self, key: int) -> None:
        self.order.pop(key, None)

    def victim(self, incoming: int, evictable: Callable[[int], bool]) -> int | None:
        for key in self.order:
            if evictable(key):
                del self.order[key]
                return key
        return None


class ARCPolicy:
    """Adaptive Replacement Cache (Megiddo & Modha): balances recency (T1) and frequency (T2) with ghost lists."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.target = capacity, 0.0
        self.t1: OrderedDict[int, None] = OrderedDict()
        self.t2: OrderedDict[int, None] = OrderedDict()
        self.b1: OrderedDict[int, None] = OrderedDict()
        self.b2: OrderedDict[int, None] = OrderedDict()

    def touch(self, key: int) -> None:
        self.t1.pop(key, None)
        self.t2.pop(key, None)
        self.t2[key] = None

    def insert(self, key: int) -> None:
        if key in self.b1:
            self.target = min(self.capacity, self.target + max(len(self.b2) / max(len(self.b1), 1), 1))
            del self.b1[key]
            self.t2[key] = None
        elif key in self.b2:
            self.target = max(0.0, self.target - max(len(self.b1) / max(len(self.b2), 1), 1))
            del self.b2[key]
            self.t2[key] = None
        else:
            self.t1[key] = None
        while len(self.t1) + len(self.b1) > self.capacity and self.b1:
            self.b1.popitem(last=False)
        while len(self.t1) + len(self.t2) + len(self.b1) + len(self.b2) > 2 * self.capacity and self.b2:
            self.b2.popitem(last=False)

    def discard(self, key: int) -> None:
        """Forget a key without a ghost entry (it was never referenced)."""
        self.t1.pop(key, None)
        self.t2.pop(key, None)

    def victim(self, incoming: int, evictable: Callable[[int], bool]) -> int | None:
        prefer_t1 = self.t1 and (len(self.t1) > self.target or (incoming in self.b2 and len(self.t1) == int(self.target)))
        order = ((self.t1, self.b1), (self.t2, self.b2)) if prefer_t1 else ((self.t2, self.b2), (self.t1, self.b1))
        for live, ghost in order:
            for key in live:
                if evictable(key):
                    del live[key]
                    ghost[key] = None
                    return key
        return None


POLICIES = {"arc": ARCPolicy, "lru": LRUPolicy}


@dataclass(eq=False)
class Entry:
    """One expert slot: loading, ready (``data`` set) or failed (``error`` set)."""

    layer: int
    expert: int
    prefetched: bool
    data: dict | None = None
    error: BaseException | None = None
    pins: int = 0
    used: bool = False
    ready: bool = False
    slot: int = -1
    judged: bool = False  # a prefetch whose layer call has come: if still unused, the guess was wrong
    cold: bool = False  # holds the store's cold (fewer-bit) tier: good for a prefill, replaced when decode needs it


class ExpertCache:
    """Slots per layer under one byte budget; all state changes happen under ``self.cond``."""

    def __init__(self, capacities: dict[int, int], expert_bytes: int, budget_bytes: int, policy: str,
                 stats: EngineStats) -> None:
        if sum(capacities.values()) * expert_bytes > budget_bytes:
            raise BudgetError("layer capacities exceed the expert budget")
        self.capacities, self.expert_bytes, self.budget_bytes = capacities, expert_bytes, budget_bytes
        slots = sum(capacities.values())
        # anonymous, page-aligned (O_DIRECT reads land in it); a slot's pages cost memory once first written
        self._stride = align_up(expert_bytes)
        self._arena = aligned_buffer(max(slots, 1) * self._stride)
        self._spare_slots = list(range(slots - 1, -1, -1))
        self.policies = {layer: POLICIES[policy](capacity) for layer, capacity in capacities.items()}
        self.entries: dict[tuple[int, int], Entry] = {}
        self.count = {layer: 0 for layer in capacities}
        self.resident_bytes = 0
        self.stats = stats
        self.cond = threading.Condition()

    def lookup(self, layer: int, expert: int, cold_ok: bool = True) -> Entry | None:
        """The entry (pinned) if present or in flight; counts as a use for the eviction policy.

        Without ``cold_ok`` a cold-tier entry does not count: it is dropped (once its load has landed) and None is
        returned, so the caller loads the full-precision expert in its place."""
        with self.cond:
            entry = self.entries.get((layer, expert))
            if entry is not None and entry.cold and not cold_ok:
                self.cond.wait_for(lambda: entry.pins == 0 and (entry.ready or entry.error is not None))
                self.policies[layer].discard(expert)
                self._drop(entry)
                return None
            if entry is not None and entry.error is None:
                entry.pins += 1
                self.policies[layer].touch(expert)
                return entry
            if entry is not None:  # a failed load: forget it so the demand path retries and reports the error
                self._drop(entry)
            return None

    def touch(self, layer: int, experts: list[int]) -> None:
        """Mark present experts as recently referenced (without pinning), e.g. because they are predicted next."""
        with self.cond:
            for expert in reversed(experts):  # the best-ranked ends most recent
                entry = self.entries.get((layer, expert))
                if entry is not None and entry.error is None:
                    self.policies[layer].touch(expert)

    def reserve(self, layer: int, expert: int, prefetch: bool, cold: bool = False) -> Entry | None:
        """Claim a slot for a load (evicting if needed); None if the expert is present or every slot is pinned.
        ``cold``: the load reads the store's cold tier (its files are never larger than a slot)."""
        with self.cond:
            if (layer, expert) in self.entries:
                return None
            if self.count[layer] >= self.capacities[layer]:
                victim = self._stale_prefetch(layer)
                if victim is not None:
                    self.policies[layer].discard(victim)
                else:
                    victim = self.policies[layer].victim(expert, lambda key: self._evictable(layer, key))
                if victim is None:
                    return None
                self._drop(self.entries[(layer, victim)])
            entry = Entry(layer, expert, prefetched=prefetch, pins=0 if prefetch else 1, slot=self._spare_slots.pop(),
                          cold=cold)
            self.entries[(layer, expert)] = entry
            self.count[layer] += 1
            self.policies[layer].insert(expert)
            self.resident_bytes += self.expert_bytes
            if self.resident_bytes > self.budget_bytes:  # cannot happen given the capacities; fail loudly if it does
                raise AssertionError(f"expert cache over budget: {self.resident_bytes} > {self.budget_bytes}")
            self.stats.peak_resident_bytes = max(self.stats.peak_resident_bytes, self.resident_bytes)
            return entry

    def _stale_prefetch(self, layer: int) -> int | None:
        """A finished prefetch that was never used: a wrong prediction, evicted before anything the router chose.

        Only prefetches whose layer call has already come count: one read ahead for the coming call is not stale,
        however early it landed (otherwise the next read of the same round could evict it)."""
        for (lay, expert), entry in self.entries.items():
            if lay == layer and entry.prefetched and entry.judged and not entry.used and entry.ready and entry.pins == 0:
                return expert
        return None

    def judge_prefetches(self, layer: int) -> None:
        """``layer``'s call has come: its prefetches not used from now on were wrong guesses."""
        with self.cond:
            for (lay, _), entry in self.entries.items():
                if lay == layer and entry.prefetched:
                    entry.judged = True

    def _evictable(self, layer: int, expert: int) -> bool:
        entry = self.entries[(layer, expert)]
        return entry.pins == 0 and (entry.ready or entry.error is not None)

    def _drop(self, entry: Entry) -> None:
        del self.entries[(entry.layer, entry.expert)]
        self.count[entry.layer] -= 1
        self.resident_bytes -= self.expert_bytes
        self._spare_slots.append(entry.slot)
        if entry.prefetched and not entry.used and entry.error is None:
            self.stats.prefetch_unused += 1
        entry.data = None

    def buffer(self, entry: Entry) -> memoryview:
        """The memory of ``entry``'s slot, which only its load writes until the entry is dropped."""
        return self._arena[entry.slot * self._stride:(entry.slot + 1) * self._stride]

    def complete(self, entry: Entry, data: dict | None, error: BaseException | None = None) -> None:
        with self.cond:
            entry.data, entry.error, entry.ready = data, error, error is None
            self.cond.notify_all()

    def unpin(self, entry: Entry) -> None:
        with self.cond:
            entry.pins -= 1
            entry.used = True
            self.cond.notify_all()

    def _free_slots(self, layer: int) -> int:
        busy = sum(1 for (lay, _), e in self.entries.items() if lay == layer and not self._evictable(lay, e.expert))
        return self.capacities[layer] - busy

    def wait_for_slot(self, layer: int) -> None:
        """Block until a load into ``layer`` could claim a slot (an in-flight load finished or a pin was released)."""
        with self.cond:
            self.cond.wait_for(lambda: self._free_slots(layer) > 0)
