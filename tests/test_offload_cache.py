"""Budget allocation and eviction: the cache never holds more expert bytes than its budget."""

import random

import pytest

from chattracker.offload.cache import ARCPolicy, BudgetError, ExpertCache, LRUPolicy, allocate
from chattracker.offload.stats import EngineStats


def test_shallow_allocation_keeps_first_layers_whole_and_splits_the_rest():
    capacities = allocate(budget_bytes=100 * 10, expert_bytes=10, layers=list(range(8)), num_experts=16)
    assert capacities[0] == capacities[1] == capacities[2] == 16  # 3 whole layers = 48 of 100 slots (<= half)
    # the other 52 slots split over the 5 deeper layers, the remainder to the shallowest: every slot is used
    assert [capacities[layer] for layer in range(3, 8)] == [11, 11, 10, 10, 10]
    even = allocate(1000, 10, list(range(8)), 16, mode="even")
    assert [even[layer] for layer in range(8)] == [13, 13, 13, 13, 12, 12, 12, 12]


def test_budget_too_small_is_a_clear_error():
    with pytest.raises(BudgetError, match="at least one per MoE layer"):
        allocate(budget_bytes=30, expert_bytes=10, layers=[0, 1, 2, 3], num_experts=8)


def test_lru_evicts_least_recent_and_skips_pinned():
    lru = LRUPolicy(3)
    for key in (1, 2, 3):
        lru.insert(key)
    lru.touch(1)
    assert lru.victim(9, lambda key: key != 2) == 3


def test_arc_keeps_frequently_used_experts_over_a_scan():
    arc = ARCPolicy(4)
    live = set()

    def access(key):
        if key in live:
            arc.touch(key)
            return
        if len(live) >= 4:
            live.discard(arc.victim(key, lambda _: True))
        arc.insert(key)
        live.add(key)

    for _ in range(3):
        for key in (1, 2):
            access(key)
    for key in range(10, 30):  # one-off scan
        access(key)
    assert {1, 2} <= live  # frequency list survives; LRU would have flushed them


@pytest.mark.parametrize("policy", ["arc", "lru"])
def test_random_workload_never_exceeds_budget(policy):
    rng = random.Random(0)
    stats = EngineStats()
    capacities = allocate(7 * 100, 100, [0, 1, 2], 8, mode="even")
    cache = ExpertCache(capacities, 100, 7 * 100, policy, stats)
    pinned = []
    for _ in range(2000):
        layer, expert = rng.randrange(3), rng.randrange(8)
        action = rng.random()
        if action < 0.5:
            entry = cache.reserve(layer, expert, prefetch=rng.random() < 0.5)
            if entry is not None:
                cache.complete(entry, {"x": None})
                if entry.pins:
                    pinned.append(entry)
        elif action < 0.8:
            entry = cache.lookup(layer, expert)
            if entry is not None:
                pinned.append(entry)
        elif pinned:
            cache.unpin(pinned.pop(rng.randrange(len(pinned))))
        assert cache.resident_bytes <= 700
        assert all(cache.count[lay] <= capacities[lay] for lay in capacities)
    assert stats.peak_resident_bytes <= 700


def test_a_prefetch_for_the_coming_call_is_not_stale_until_that_call_has_come():
    stats = EngineStats()
    cache = ExpertCache({0: 2}, 100, 200, "lru", stats)
    used = cache.reserve(0, 5, prefetch=False)
    cache.complete(used, {"x": None})
    cache.unpin(used)
    early = cache.reserve(0, 1, prefetch=True)  # read ahead for the next call, and already landed
    cache.complete(early, {"x": None})
    assert cache.reserve(0, 2, prefetch=True) is not None  # the next read of the same round evicts 5, not 1
    assert set(key[1] for key in cache.entries) == {1, 2}
    cache.judge_prefetches(0)  # the call came and used neither: both were wrong guesses
    cache.complete(cache.entries[(0, 2)], {"x": None})
    assert cache.reserve(0, 7, prefetch=False) is not None and stats.prefetch_unused == 1
