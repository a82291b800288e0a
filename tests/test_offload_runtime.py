"""Offloaded generate() on tiny random models of every supported class, under small expert budgets.

Tolerances: the offloaded model must give exactly the tokens of the everything-resident model at the same
quantization (same kernels); against the unquantized transformers model, logits differ by at most 1% (INT8) and
5% (INT4, which also runs bfloat16 activations) of the largest logit magnitude.
"""

import threading
import time

import pytest
import torch

from chattracker.offload import convert_checkpoint, load_offloaded_model
from chattracker.offload.prefetch import Prediction, Predictor
from chattracker.offload.testing import KINDS, image_inputs, save_tiny_model

PROMPT = torch.tensor([[2, 5, 7, 3, 9, 11, 4, 6, 8, 10]])


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("offload_runtime")
    out = {}
    for kind in KINDS:
        model_dir = save_tiny_model(kind, root / kind, with_tokenizer=False)
        out[kind] = (model_dir, convert_checkpoint(model_dir, root / f"{kind}_int4", bits=4, group_size=32).parent,
                     convert_checkpoint(model_dir, root / f"{kind}_int8", bits=8, group_size=32).parent)
    return out


def _generate(model_dir, store, method, budget, inputs=None, tokens=8):
    model, engine = load_offloaded_model(model_dir, store, expert_budget=budget, method=method)
    try:
        inputs = inputs or {"input_ids": PROMPT, "attention_mask": torch.ones_like(PROMPT)}
        output = model.generate(**inputs, max_new_tokens=tokens, do_sample=False)
        return output, engine
    finally:
        engine.close()


@pytest.mark.parametrize("kind", KINDS)
def test_offloaded_generate_matches_resident_within_budget(stores, kind):
    model_dir, store, _ = stores[kind]
    resident, _ = _generate(model_dir, store, "resident", 1.0)
    for method in ("fate", "lod", "lod-overlap", "eap"):
        output, engine = _generate(model_dir, store, method, 0.3)
        assert torch.equal(output, resident), method
        stats = engine.stats.summary()
        assert stats["misses"] > 0 and stats["bytes_read"] > 0  # experts really were paged in
        assert 0 < stats["peak_resident_bytes"] <= engine.budget_bytes
        assert engine.budget_bytes == int(0.3 * engine.store.total_bytes)


def test_qwen3_vl_with_an_image_matches_resident(stores):
    model_dir, store, _ = stores["qwen3_vl_moe"]
    resident, _ = _generate(model_dir, store, "resident", 1.0, image_inputs())
    output, engine = _generate(model_dir, store, "fate", 0.3, image_inputs())
    assert torch.equal(output, resident)
    assert engine.stats.summary()["loads_prefetch"] > 0


@pytest.mark.parametrize("method, overlaps", [("lod", False), ("lod-overlap", True), ("fate", True)])
def test_only_overlapping_methods_compute_while_experts_load(stores, method, overlaps):
    """Load-on-demand reads one miss at a time, when its turn comes, with nothing computing meanwhile; Fate (and the
    lod-overlap ablation) request a layer's misses at once and compute present experts while they arrive."""
    model_dir, store, _ = stores["qwen3_moe"]
    model, engine = load_offloaded_model(model_dir, store, expert_budget=0.3, method=method)
    lock, reading, seen = threading.Lock(), [0], {"most_reads_at_once": 0, "computes_during_reads": 0, "computes": 0}
    read, compute = engine.store.read_into, engine._compute

    def slow_read(*args):
        with lock:
            reading[0] += 1
            seen["most_reads_at_once"] = max(seen["most_reads_at_once"], reading[0])
        try:
            time.sleep(0.005)  # long enough that an overlapping engine is seen computing meanwhile
            return read(*args)
        finally:
            with lock:
                reading[0] -= 1

    def watched_compute(*args):
        with lock:
            seen["computes"] += 1
            seen["computes_during_reads"] += reading[0] > 0
        return compute(*args)

    engine.store.read_into, engine._compute = slow_read, watched_compute
    try:
        output = model.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=6, do_sample=False)
    finally:
        engine.close()
    resident, _ = _generate(model_dir, store, "resident", 1.0, tokens=6)
    assert torch.equal(output, resident)
    assert engine.stats.summary()["misses"] > 0 and seen["computes"] > 0
    if overlaps:
        assert seen["most_reads_at_once"] > 1 and seen["computes_during_reads"] > 0
    else:
        assert seen["most_reads_at_once"] == 1 and seen["computes_during_reads"] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_logits_close_to_unquantized_model(stores, kind):
    import transformers

    model_dir, int4, int8 = stores[kind]
    reference = getattr(transformers, transformers.AutoConfig.from_pretrained(model_dir).architectures[0])
    with torch.no_grad():
        expected = reference.from_pretrained(model_dir).eval()(PROMPT).logits
        scale = float(expected.abs().max())
        for store, tolerance in ((int8, 0.01), (int4, 0.05)):
            model, engine = load_offloaded_model(model_dir, store, expert_budget=0.5, method="fate")
            try:
                logits = model(PROMPT).logits
            finally:
                engine.close()
            assert float((logits - expected).abs().max()) <= tolerance * scale, store.name


@pytest.fixture(scope="module")
def constant_router(tmp_path_factory):
    """All-zero routers: every token of every layer picks the same experts, so the cross-layer gate is exact."""
    root = tmp_path_factory.mktemp("offload_constant")
    model_dir = save_tiny_model("qwen3_moe", root / "model", router_std=0.0, with_tokenizer=False)
    return model_dir, convert_checkpoint(model_dir, root / "store", bits=4, group_size=32).parent


def test_prefetch_statistics_when_predictions_are_right(constant_router):
    model_dir, store = constant_router
    _, engine = _generate(model_dir, store, "fate", 0.25, tokens=6)  # 2 slots per layer = top-k
    layer = engine.stats.summary()["layers"]["1"]
    assert layer["precision"] == 1.0 and layer["recall"] == 1.0
    assert layer["predicted"] == layer["demanded"] == 2 * 6  # prefill + 5 decode steps, 2 experts each
    assert layer["misses"] == 0 and layer["hits"] + layer["late_hits"] == layer["demanded"]
    first = engine.stats.summary()["layers"]["0"]
    assert first["misses"] == 2 and first["hits"] == 2 * 5 and first["predicted"] == 0  # first layer: no prediction


@pytest.mark.parametrize("adaptive", [True, False])
def test_fate_stops_predicting_while_right_guesses_are_already_cached(constant_router, adaptive):
    """Right guesses of cached experts save nothing, so after 16 decode rounds the gate (a router call per layer)
    is skipped, 7 rounds in 8; the tokens do not change."""
    model_dir, store = constant_router
    resident, _ = _generate(model_dir, store, "resident", 1.0, tokens=40)
    output, engine = _generate(model_dir, store, "fate", 0.25, tokens=40) if adaptive else (None, None)
    if not adaptive:
        model, engine = load_offloaded_model(model_dir, store, expert_budget=0.25, method="fate", adaptive_gate=False)
        try:
            output = model.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=40, do_sample=False)
        finally:
            engine.close()
    assert torch.equal(output, resident)
    summary = engine.stats.summary()
    layer = summary["layers"]["1"]
    assert layer["misses"] == 0 and layer["precision"] == 1.0
    if adaptive:
        # 39 decode rounds: 16 predicted, then 7 skipped and 1 probe, three times over (the last cycle cut short)
        assert summary["gate_skips"] == 21 and layer["predicted"] == 2 * (1 + 16 + 2)
    else:
        assert summary["gate_skips"] == 0 and layer["predicted"] == 2 * 40


class _AlwaysWrong(Predictor):
    """Names two experts the constant router never picks (it picks what top-k of equal scores returns)."""

    name = "wrong"

    def __init__(self):
        chosen = set(torch.topk(torch.zeros(1, 8).softmax(-1), 2).indices.reshape(-1).tolist())
        self.wrong = [e for e in range(8) if e not in chosen][:2]

    def predict(self, position, hidden_states):
        return Prediction(self.wrong, set(self.wrong), pooled=False) if position == 0 else None


def _generate_with_wrong_predictions(model_dir, store, tokens: int, **options):
    model, engine = load_offloaded_model(model_dir, store, expert_budget=0.25, method="fate", **options)
    engine.predictor = _AlwaysWrong()
    run = engine.run

    def settled_run(*args):
        # Each layer call starts once every load in flight has landed, so what the counts below describe does not
        # depend on IO timing (a wrong prefetch still in flight when the router's experts need its slot would make a
        # demand load evict another expert instead, and the next round would find that prefetch already present).
        with engine.cache.cond:
            engine.cache.cond.wait_for(lambda: all(e.ready or e.error for e in engine.cache.entries.values()))
        return run(*args)

    engine.run = settled_run
    try:
        model.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=tokens, do_sample=False)
    finally:
        engine.close()
    return engine


def test_prefetch_statistics_when_predictions_are_wrong(constant_router):
    model_dir, store = constant_router
    # min_precision 0: keep reading ahead whatever the outcome, so every wrong read is counted
    engine = _generate_with_wrong_predictions(model_dir, store, 6, min_precision=0.0)
    summary = engine.stats.summary()
    layer = summary["layers"]["1"]
    assert layer["precision"] == 0.0 and layer["recall"] == 0.0
    assert layer["hits"] == 0 and layer["misses"] == layer["demanded"] == 12  # each wrong prefetch evicted the right ones
    assert summary["prefetch_unused"] >= 10 and summary["loads_prefetch"] == 12
    assert summary["peak_resident_bytes"] <= engine.budget_bytes


def test_fate_stops_reading_ahead_when_its_reads_go_unused(constant_router):
    model_dir, store = constant_router
    engine = _generate_with_wrong_predictions(model_dir, store, 12)
    summary = engine.stats.summary()
    layer = summary["layers"]["1"]
    assert layer["predicted"] == 2 * 12 and layer["precision"] == 0.0  # every prediction is still scored
    # 2 wrong reads per token without the gate (24); with it: the first rounds until 4 reads are judged, then
    # one probe round in 16
    assert summary["loads_prefetch"] <= 8
    read, right = engine.issued_counts[1]
    assert right == 0.0 and read >= 4


@pytest.mark.parametrize("kind", ["qwen3_vl_moe", "mixtral"])
def test_chunked_prefill_matches_resident_and_runs_in_chunks(stores, kind):
    model_dir, store, _ = stores[kind]
    inputs = image_inputs() if kind == "qwen3_vl_moe" else None
    outputs = {}
    for method in ("resident", "fate"):
        model, engine = load_offloaded_model(model_dir, store, expert_budget=0.3 if method == "fate" else 1.0,
                                             method=method, prefill_chunk=4)
        assert model.generation_config.prefill_chunk_size == 4
        seen = []
        run = engine.run
        engine.run = lambda position, *args: (seen.append(args[2].shape[0]) if position == 0 else None,
                                              run(position, *args))[1]
        try:
            feed = inputs or {"input_ids": PROMPT, "attention_mask": torch.ones_like(PROMPT)}
            outputs[method] = model.generate(**feed, max_new_tokens=4, do_sample=False)
        finally:
            engine.close()
        prompt = feed["input_ids"].shape[1]
        assert seen[: -(-prompt // 4)] == [4] * (prompt // 4) + ([prompt % 4] if prompt % 4 else [])
        assert seen[-3:] == [1, 1, 1]  # then one token per decode step
    assert torch.equal(outputs["fate"], outputs["resident"])


def test_threads_sets_torch_compute_threads_and_refuses_nonsense(stores):
    model_dir, store, _ = stores[KINDS[0]]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        model, engine = load_offloaded_model(model_dir, store, expert_budget=0.3, method="fate", threads=1)
        engine.close()
        assert torch.get_num_threads() == 1
        for bad in (0, -1, 1.5, True, "2"):
            with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
                load_offloaded_model(model_dir, store, expert_budget=0.3, method="fate", threads=bad)
        assert torch.get_num_threads() == 1  # a refused value changes nothing
    finally:
        torch.set_num_threads(before)
