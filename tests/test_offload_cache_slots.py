"""A load into a full layer waits for a slot: slots held by loads in flight or by pinned experts are busy; a slot
frees when its load lands and its pin is released."""

from __future__ import annotations

import threading

import pytest

from chattracker.offload.cache import ExpertCache
from chattracker.offload.stats import EngineStats


def test_wait_for_slot_blocks_until_a_pinned_or_loading_slot_is_released():
    cache = ExpertCache({0: 2, 1: 1}, 100, 300, "lru", EngineStats())
    loading = cache.reserve(0, 3, prefetch=True)  # in flight, unpinned
    used = cache.reserve(0, 4, prefetch=False)  # a demand load: pinned
    assert cache._free_slots(0) == 0 and cache._free_slots(1) == 1
    cache.complete(loading, {"x": None})
    assert cache._free_slots(0) == 1  # landed and unpinned: evictable
    cache.complete(used, {"x": None})
    pinned = cache.lookup(0, 3)
    assert cache._free_slots(0) == 0
    released = threading.Event()

    def wait():
        cache.wait_for_slot(0)
        released.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    assert not released.wait(0.2)  # every slot of layer 0 is pinned
    cache.unpin(pinned)
    assert released.wait(5)
    waiter.join(5)
    cache.wait_for_slot(1)  # a layer with room does not wait


def test_bookkeeping_of_evictions_prefetches_and_touches():
    stats = EngineStats()
    cache = ExpertCache({0: 3, 1: 1}, 100, 400, "lru", stats)
    for expert in (1, 2, 3):
        cache.complete(cache.reserve(0, expert, prefetch=True), {"x": None})
    assert cache.resident_bytes == 300
    cache.unpin(cache.lookup(0, 2))  # 2 was a right guess
    cache.touch(0, [3, 1])  # predicted again: 3 ranked first ends most recent
    cache.judge_prefetches(0)  # layer 0's call came: 1 and 3 are still unused
    other = cache.reserve(1, 7, prefetch=True)
    cache.complete(other, {"x": None})
    assert not other.judged and all(cache.entries[(0, e)].judged for e in (1, 2, 3))
    cache.reserve(0, 4, prefetch=False)  # a stale (judged, unused) prefetch goes first: 1 is the first found
    assert {e for (lay, e) in cache.entries if lay == 0} == {2, 3, 4} and stats.prefetch_unused == 1
    assert cache.resident_bytes == 400
    cache.unpin(cache.entries[(0, 4)])
    cache.reserve(0, 5, prefetch=False)  # 3 is stale too
    assert {e for (lay, e) in cache.entries if lay == 0} == {2, 4, 5} and stats.prefetch_unused == 2
    cache.unpin(cache.entries[(0, 5)])
    cache.reserve(0, 6, prefetch=False)  # no stale prefetch left (2 was used): least recent by the policy
    assert {e for (lay, e) in cache.entries if lay == 0} == {4, 5, 6} and stats.prefetch_unused == 2


def test_touch_orders_the_predicted_experts_and_in_flight_loads_are_never_evicted():
    cache = ExpertCache({0: 3}, 100, 300, "lru", EngineStats())
    for expert in (1, 2, 3):
        cache.unpin(cache.reserve(0, expert, prefetch=False))
        cache.complete(cache.entries[(0, expert)], {"x": None})
    cache.touch(0, [1, 2])  # best-ranked (1) ends most recent: order 3, 2, 1
    assert list(cache.policies[0].order) == [3, 2, 1]
    in_flight = ExpertCache({0: 1}, 100, 100, "arc", EngineStats())
    in_flight.reserve(0, 1, prefetch=True)  # unpinned but still loading
    assert in_flight.reserve(0, 2, prefetch=True) is None


def test_lru_forgets_a_discarded_key():
    from chattracker.offload.cache import LRUPolicy

    lru = LRUPolicy(3)
    for key in (1, 2, 3):
        lru.insert(key)
    lru.discard(1)
    lru.discard(9)  # unknown keys are ignored
    assert [lru.victim(0, lambda _: True) for _ in range(3)] == [2, 3, None]


def test_allocation_edges():
    from chattracker.offload.cache import BudgetError, allocate

    assert allocate(4 * 10, 10, [0, 1, 2, 3], 8) == {0: 1, 1: 1, 2: 1, 3: 1}  # exactly one slot per layer is enough
    with pytest.raises(BudgetError, match=r"holds 3 experts; at least one per MoE layer \(4 x 10 = 40 bytes\)"):
        allocate(39, 10, [0, 1, 2, 3], 8)
    capacities = allocate(82 * 10, 10, list(range(12)), 8)  # half the slots could hold 5 whole layers: Fate keeps 4
    assert [capacities[layer] for layer in range(12)] == [8, 8, 8, 8, 7, 7, 6, 6, 6, 6, 6, 6]
    with pytest.raises(ValueError, match="unknown allocation 'deep'"):
        allocate(450, 10, list(range(12)), 4, mode="deep")
