"""The Klotski planner: group size and cache split from a measured compute model and read bandwidth."""

from __future__ import annotations

import pytest

from chattracker.offload import convert_checkpoint
from chattracker.offload.planner import ComputeModel, distinct_experts, estimate, measure_bandwidth, plan
from chattracker.offload.store import ExpertStore
from chattracker.offload.testing import save_tiny_model


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("planner")
    model_dir = save_tiny_model("qwen3_moe", root / "model", with_tokenizer=False, layers=6, experts=16, top_k=4)
    return ExpertStore(convert_checkpoint(model_dir, root / "store", bits=4, group_size=32).parent)


def test_compute_model_fit_recovers_its_terms_and_drops_negative_ones():
    truth = ComputeModel(0.002, 0.0005, 0.0001)
    samples = [(t, e, truth.seconds(t, e)) for t, e in [(1, 4), (2, 7), (4, 10), (8, 14), (16, 16), (3, 9)]]
    fitted = ComputeModel.fit(samples)
    for name in ("fixed", "per_token", "per_expert"):
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=1e-6)
    flat = ComputeModel.fit([(t, e, 0.01 - 1e-5 * e) for t, e in [(1, 4), (2, 7), (4, 10)]])
    assert flat.per_expert == 0 and flat.fixed > 0  # time that falls with experts is not a negative cost
    with pytest.raises(ValueError, match="at least 3"):
        ComputeModel.fit([(1, 4, 0.01)])


def test_distinct_experts_of_a_group():
    assert distinct_experts(1, 128, 8) == pytest.approx(8)
    assert distinct_experts(16, 128, 8) == pytest.approx(128 * (1 - (120 / 128) ** 16))
    assert distinct_experts(1000, 16, 4) == pytest.approx(16)


def test_plan_picks_the_smallest_group_that_hides_the_reads_near_the_best(store):
    budget = store.total_bytes // 4
    compute = ComputeModel(fixed=1e-4, per_token=2e-4, per_expert=2e-5)
    bandwidth = 2e8
    chosen = plan(store, budget, compute, bandwidth, max_group=16)
    best = {e.group: e for e in chosen.estimates if e.resident_layers == chosen.resident_layers}
    assert best[chosen.group].hidden
    top = max(e.tokens_per_s for e in chosen.estimates)
    assert best[chosen.group].tokens_per_s >= 0.9 * top
    # every smaller group either leaves reads exposed or is more than 10% slower than the best estimate
    assert all(not e.hidden or e.tokens_per_s < 0.9 * top for e in chosen.estimates if e.group < chosen.group)
    assert 1 < chosen.group < 16
    assert f"n={chosen.group}" in chosen.reason and "hides" in chosen.reason
    assert sum(chosen.capacities.values()) * store.expert_bytes <= budget
    assert chosen.engine_options() == {"allocation": "shallow", "resident_layers": chosen.resident_layers}
    # reads cost nothing and compute is all per token: batching gains nothing, so one sequence at a time
    assert plan(store, budget, ComputeModel(0.0, 2e-4, 0.0), 1e15, max_group=16).group == 1


def test_plan_says_when_nothing_hides_the_reads(store):
    chosen = plan(store, store.total_bytes // 4, ComputeModel(1e-5, 1e-6, 0.0), bandwidth=1e5, max_group=8)
    assert not any(e.hidden for e in chosen.estimates)
    assert "no group up to 8 hides the reads" in chosen.reason
    top = max(e.tokens_per_s for e in chosen.estimates)
    assert max(e.tokens_per_s for e in chosen.estimates if e.group == chosen.group) >= 0.9 * top


def test_first_layer_resident_removes_its_serial_read(store):
    compute, bandwidth = ComputeModel(1e-4, 2e-4, 2e-5), 2e8
    budget = store.total_bytes // 2
    from chattracker.offload.cache import allocate

    split = {r: allocate(budget, store.expert_bytes, store.layers, store.num_experts, "shallow", r) for r in (0, 1)}
    none, first = (estimate(store, split[r], 4, 4, compute, bandwidth, r) for r in (0, 1))
    assert split[1][store.layers[0]] == store.num_experts
    assert first.step_s < none.step_s


def test_bandwidth_is_measured_from_real_reads(store):
    assert measure_bandwidth(store, reads=8, threads=2) > 0
