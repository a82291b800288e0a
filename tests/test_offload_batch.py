"""Klotski in the engine: padded batches through the offloaded model, expert order, co-activation prefetch.

Tiny random models of real classes; every batched run is compared token for token with each prompt alone on the
everything-resident engine at the same quantization.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from chattracker.offload import convert_checkpoint, load_offloaded_model
from chattracker.offload.coactivation import CoactivationPredictor, CoactivationTable, calibrate
from chattracker.offload.runtime import OffloadEngine
from chattracker.offload.store import ExpertStore, ExpertStoreError
from chattracker.offload.testing import image_inputs, save_tiny_model

PROMPTS = [[2, 5, 7, 3, 9, 11, 4, 6, 8, 10], [3, 4, 5], [9, 8, 7, 6, 5, 4, 3], [12, 13, 2, 2, 5, 6]]
PAD = 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("offload_batch")
    model_dir = save_tiny_model("qwen3_moe", root / "model", with_tokenizer=False, layers=4, experts=16, top_k=4)
    return model_dir, convert_checkpoint(model_dir, root / "store", bits=4, group_size=32).parent


def _padded(prompts):
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return {"input_ids": ids, "attention_mask": mask}


def _alone(model_dir, store, prompts, tokens=8):
    model, engine = load_offloaded_model(model_dir, store, expert_budget=1.0, method="resident")
    try:
        out = []
        for prompt in prompts:
            ids = torch.tensor([prompt])
            generated = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                                       do_sample=False)
            out.append(generated[0, len(prompt):].tolist())
        return out
    finally:
        engine.close()


@pytest.mark.parametrize("method", ["klotski", "fate", "lod"])
def test_each_prompt_of_a_batch_gets_its_alone_tokens_within_budget(tiny, method):
    model_dir, store = tiny
    alone = _alone(model_dir, store, PROMPTS)
    model, engine = load_offloaded_model(model_dir, store, expert_budget=0.3, method=method)
    try:
        inputs = _padded(PROMPTS)
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False, pad_token_id=PAD)
        stats = engine.stats.summary()
    finally:
        engine.close()
    assert [row[inputs["input_ids"].shape[1]:].tolist() for row in output] == alone
    assert stats["misses"] > 0 and stats["bytes_read"] > 0  # experts really were paged in
    assert 0 < stats["peak_resident_bytes"] <= engine.budget_bytes < 0.31 * engine.store.total_bytes
    assert engine.step_length == 1  # the last call was a decode step of 4 sequences, not taken for a prefill


def test_batched_images_give_each_prompt_its_alone_tokens(tmp_path):
    model_dir = save_tiny_model("qwen3_vl_moe", tmp_path / "vl", with_tokenizer=False, layers=3, experts=8)
    store = convert_checkpoint(model_dir, tmp_path / "store", bits=4, group_size=32).parent
    first, second = image_inputs(4, text_before=6), image_inputs(4, text_before=3, text_after=2)
    second["pixel_values"] = second["pixel_values"].flip(0)  # another picture
    model, engine = load_offloaded_model(model_dir, store, expert_budget=1.0, method="resident")
    try:
        alone = [model.generate(**inputs, max_new_tokens=6, do_sample=False)[0, inputs["input_ids"].shape[1]:].tolist()
                 for inputs in (first, second)]
    finally:
        engine.close()
    width = first["input_ids"].shape[1]
    pad = width - second["input_ids"].shape[1]
    batch = {"input_ids": torch.cat([first["input_ids"], torch.cat([torch.full((1, pad), PAD), second["input_ids"]], 1)]),
             "attention_mask": torch.cat([first["attention_mask"],
                                          torch.cat([torch.zeros(1, pad, dtype=torch.long), second["attention_mask"]], 1)]),
             "pixel_values": torch.cat([first["pixel_values"], second["pixel_values"]]),
             "image_grid_thw": torch.cat([first["image_grid_thw"], second["image_grid_thw"]])}
    model, engine = load_offloaded_model(model_dir, store, expert_budget=0.3, method="klotski")
    try:
        output = model.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=PAD)
        assert engine.stats.peak_resident_bytes <= engine.budget_bytes
    finally:
        engine.close()
    assert [row[width:].tolist() for row in output] == alone


def _router_call(engine, position, selection, seed=0):
    """One MoE layer call as the experts module makes it: ``selection`` is each token's top-k expert list."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.tensor(selection)
    hidden = torch.randn(index.shape[0], engine.store.manifest["hidden_size"], generator=generator)
    weights = torch.softmax(torch.randn(index.shape, generator=generator), dim=-1)
    return engine.run(position, engine.store.layers[position], nn.SiLU(), hidden, index, weights)


def test_resident_experts_first_then_missing_by_demand_and_the_order_changes_no_bits(tiny):
    _, store_dir = tiny
    store = ExpertStore(store_dir)
    engine = OffloadEngine(store, store.total_bytes // 2, "klotski", allocation="even", io_threads=1)
    resident = OffloadEngine(store, store.total_bytes, "resident")
    try:
        _router_call(engine, 1, [[0, 1, 2, 3]])  # experts 0-3 of the layer are now cached (8 slots per layer)
        engine.compute_log = []
        # demand: 5 x3, 2 x2, 7 x2 (2 and 7 tie: the lower index first), 1 x1, 9 x1, 11 x1, 12 x1, 13 x1 -> cached
        # 2 then 1 computed first, then the missing ones by demand (one IO thread: they land in that order)
        selection = [[5, 2, 7, 1], [5, 2, 7, 9], [5, 11, 12, 13]]
        output = _router_call(engine, 1, selection, seed=3)
        log = engine.compute_log
        assert [(expert, present) for _, expert, present, _ in log] == [
            (2, True), (1, True), (5, False), (7, False), (9, False), (11, False), (12, False), (13, False)]
        assert [demand for *_, demand in log] == [2, 1, 3, 2, 1, 1, 1, 1]
        assert torch.equal(output, _router_call(resident, 1, selection, seed=3))
    finally:
        engine.close()
        resident.close()


class _FixedGate(nn.Module):
    """A router stand-in that always picks ``experts`` (the table alone decides when weighted 1)."""

    def __init__(self, experts: list[int], num_experts: int) -> None:
        super().__init__()
        self.experts, self.num_experts = experts, num_experts

    def forward(self, hidden_states):
        tokens = hidden_states.shape[0]
        return (torch.zeros(tokens, self.num_experts), torch.zeros(tokens, len(self.experts)),
                torch.tensor([self.experts] * tokens))


def _built_table(store: ExpertStore) -> CoactivationTable:
    """Position 0 -> 1: a token with expert a at position 0 always takes experts a + 8 and (a + 9) % 16 next."""
    experts = store.num_experts
    routing = []
    for a in range(0, experts, 4):
        first = torch.tensor([[a, a + 1, a + 2, a + 3]])
        second = torch.tensor([[(e + 8) % experts for e in first[0].tolist()]])
        routing += [(0, first), (1, second)]
    return CoactivationTable.from_routing(routing, len(store.layers), experts, prompts=len(routing) // 2)


def test_coactivation_table_counts_pairs_and_is_saved_with_the_store(tiny):
    _, store_dir = tiny
    store = ExpertStore(store_dir)
    table = _built_table(store)
    assert table.counts[0, 0, 8] == 1 and table.counts[0, 0, 9] == 1 and table.counts[0, 0, 0] == 0
    assert table.counts[0].sum() == 4 * 16 and table.counts[1:].sum() == 0
    # one token that chose 0-3 is expected at 8-11 (one token each: every a of the group goes to all four)
    assert table.expected(0, torch.tensor([[0, 1, 2, 3]])).tolist() == [0.0] * 8 + [1.0] * 4 + [0.0] * 4
    path = table.save(store)
    loaded = CoactivationTable.load(store)
    assert path.name == "coactivation.pt" and torch.equal(loaded.counts, table.counts) and loaded.prompts == 4
    torch.save({"counts": table.counts[:1], "tokens": 1, "prompts": 1, "layers": [0], "num_experts": 16}, path)
    with pytest.raises(ExpertStoreError, match="another model"):
        CoactivationTable.load(store)
    path.unlink()
    assert CoactivationTable.load(store) is None


def test_group_prefetch_from_the_table_reads_exactly_the_predicted_experts(tiny):
    _, store_dir = tiny
    store = ExpertStore(store_dir)
    engine = OffloadEngine(store, store.total_bytes // 2, "klotski", allocation="even", io_threads=1)
    try:
        gates = [_FixedGate([0, 1, 2, 3], store.num_experts) for _ in store.layers]
        engine.predictor = CoactivationPredictor(gates, store.num_experts, _built_table(store), table_weight=1.0)
        # a group of 3 sequences: at position 0 they chose {0-3}, {0-3}, {4-7}: position 1 should get 8-11 (two tokens
        # each) then 12-15 (one each): 8 experts, the layer's 8 slots
        _router_call(engine, 0, [[0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7]])
        assert engine.pending[1][0] == set(range(8, 16))
        second = store.layers[1]
        for expert in range(8, 16):  # let the reads ahead land
            engine._wait(engine.cache.entries[(second, expert)])
        assert (engine.stats.loads_demand, engine.stats.loads_prefetch) == (8, 8)  # layer 0 on demand, layer 1 ahead
        _router_call(engine, 1, [[8, 9, 10, 11], [8, 9, 10, 11], [12, 13, 14, 15]])
        assert (engine.stats.loads_demand, engine.stats.loads_prefetch) == (8, 8)  # nothing more to read
        layer = engine.stats.summary()["layers"][str(second)]
        assert (layer["hits"], layer["misses"], layer["precision"], layer["recall"]) == (8, 0, 1.0, 1.0)
    finally:
        engine.close()


def test_calibration_saves_a_table_the_klotski_engine_then_uses(tiny, tmp_path):
    model_dir, store_dir = tiny
    model, engine = load_offloaded_model(model_dir, store_dir, expert_budget=0.3, method="klotski")
    try:
        assert engine.predictor.table is None
        prompts = [{"input_ids": torch.tensor([p]), "attention_mask": torch.ones(1, len(p), dtype=torch.long)}
                   for p in PROMPTS]
        table = calibrate(model, engine, prompts, max_new_tokens=4)
    finally:
        engine.close()
    tokens = sum(map(len, PROMPTS)) + 3 * len(PROMPTS)  # prompts + 3 decode steps each (the 4th token is not run)
    assert table.tokens == tokens and table.counts[0].sum() == tokens * 4 * 4
    model, engine = load_offloaded_model(model_dir, store_dir, expert_budget=0.3, method="klotski")
    try:
        assert torch.equal(engine.predictor.table.counts, table.counts)
        output = model.generate(**_padded(PROMPTS), max_new_tokens=8, do_sample=False, pad_token_id=PAD)
    finally:
        engine.close()
        (store_dir / "coactivation.pt").unlink()
    assert [row[10:].tolist() for row in output] == _alone(model_dir, store_dir, PROMPTS)
