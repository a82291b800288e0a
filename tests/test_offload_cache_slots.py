"""A load into a full layer waits for a slot: slots held by loads in flight or by pinned experts are busy; a slot
frees when its load lands and its pin is released."""

from __future__ import annotations

import threading

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
