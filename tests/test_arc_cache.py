"""ARC (Megiddo & Modha, FAST 2003) on a known access sequence: which entry is evicted, which ghost list remembers
it, and how a ghost hit moves the target size of the recency list (T1).

On a miss with a full cache ARC replaces the LEAST recently used entry of T1 when T1 is longer than the target p
(or of T2 otherwise) and remembers it at the most recent end of the matching ghost list (B1 or B2); a key found in
B1 raises p, one found in B2 lowers it, and either comes back straight into T2. The expected states below were
worked out by hand from the paper's algorithm (capacity c = 3)."""

from __future__ import annotations

from chattracker.offload.cache import ARCPolicy, ExpertCache
from chattracker.offload.stats import EngineStats

# (key accessed, key evicted or None, T1, T2, B1, B2 after the access (least recent first), target p)
TRACE = [
    (1, None, [1], [], [], [], 0),
    (2, None, [1, 2], [], [], [], 0),
    (3, None, [1, 2, 3], [], [], [], 0),
    (1, None, [2, 3], [1], [], [], 0),         # a hit in T1: now seen twice, so it moves to T2
    (4, 2, [3, 4], [1], [2], [], 0),           # miss, |T1| = 2 > p = 0: T1's least recent (2) goes to B1
    (5, 3, [4, 5], [1], [3], [], 0),           # |T1| + |B1| would exceed c: B1's oldest ghost (2) is forgotten
    (3, 4, [5], [1, 3], [4], [], 1),           # a ghost hit in B1: p rises by max(|B2| / |B1|, 1) = 1; 3 -> T2
    (6, 1, [5, 6], [3], [4], [1], 1),          # |T1| = 1 is not above p = 1: T2's least recent (1) goes to B2
    (1, 5, [6], [3, 1], [4, 5], [], 0),        # a ghost hit in B2: p falls by max(|B1| / |B2|, 1) to 0
    (7, 6, [7], [3, 1], [5, 6], [], 0),        # B1's oldest ghost (4) is forgotten
    (3, None, [7], [1, 3], [5, 6], [], 0),     # a hit in T2 moves the key to T2's most recent end
    (7, None, [], [1, 3, 7], [5, 6], [], 0),
    (9, 1, [9], [3, 7], [5, 6], [1], 0),       # T1 is empty: T2's least recent (1, not 3) goes to B2
]


def replay(arc: ARCPolicy, resident: set[int], key: int) -> int | None:
    """One access the way the expert cache makes it: a hit touches; a miss evicts (when full), then inserts."""
    if key in resident:
        arc.touch(key)
        return None
    victim = None
    if len(resident) >= arc.capacity:
        victim = arc.victim(key, lambda _: True)
        resident.discard(victim)
    arc.insert(key)
    resident.add(key)
    return victim


def test_arc_evicts_the_least_recent_of_t1_and_keeps_ghosts_as_the_paper_says():
    arc, resident = ARCPolicy(3), set()
    for step, (key, evicted, t1, t2, b1, b2, target) in enumerate(TRACE):
        assert replay(arc, resident, key) == evicted, f"step {step}: access {key}"
        state = (list(arc.t1), list(arc.t2), list(arc.b1), list(arc.b2), arc.target)
        assert state == (t1, t2, b1, b2, target), f"step {step}: access {key}"
        assert resident == set(t1) | set(t2)


def test_arc_skips_entries_that_cannot_be_evicted_and_prefers_t1_on_a_b2_hit_at_the_target():
    arc = ARCPolicy(3)
    for key in (1, 2, 3):
        arc.insert(key)
    assert arc.victim(9, lambda key: key != 1) == 2  # 1 is pinned: the next least recent of T1 goes
    assert list(arc.b1) == [2] and list(arc.t1) == [1, 3]
    # |T1| == p with the incoming key in B2: the paper still replaces from T1
    arc = ARCPolicy(3)
    arc.t1.update(dict.fromkeys([1]))
    arc.t2.update(dict.fromkeys([2, 3]))
    arc.b2.update(dict.fromkeys([4]))
    arc.target = 1.0
    assert arc.victim(4, lambda _: True) == 1 and list(arc.b1) == [1]
    arc.t1.update(dict.fromkeys([5]))
    assert arc.victim(6, lambda _: True) == 2 and list(arc.b2) == [4, 2]  # |T1| = 1 = p, 6 not in B2: from T2
    assert arc.victim(7, lambda key: False) is None


def test_the_expert_cache_evicts_as_arc_does():
    """The same sequence through ExpertCache (reserve on a miss, lookup on a hit): the evicted experts match."""
    cache = ExpertCache({0: 3}, 100, 3 * 100, "arc", EngineStats())
    for step, (key, evicted, t1, t2, *_rest) in enumerate(TRACE):
        before = {expert for _, expert in cache.entries}
        entry = cache.lookup(0, key)
        if entry is None:
            entry = cache.reserve(0, key, prefetch=False)
            cache.complete(entry, {"x": None})
        cache.unpin(entry)
        gone = before - {expert for _, expert in cache.entries}
        assert gone == ({evicted} if evicted is not None else set()), f"step {step}: access {key}"
        assert {expert for _, expert in cache.entries} == set(t1) | set(t2)
