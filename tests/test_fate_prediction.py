"""Fate's cross-layer gate: the experts of MoE layer i+1 are predicted by layer i+1's router applied to the tensor
layer i's router sees (DESIGN.md section 4).

The routers here disagree layer by layer on purpose: layer l's router is layer 0's with its expert rows rolled by l,
so for any input layer l+1's choice is layer l's choice shifted by one expert. A prediction made with layer i's own
router (or any other layer's) then names the wrong experts on every token, which routers that all prefer the same
experts could never show.
"""

from __future__ import annotations

import torch

from chattracker.offload import convert_checkpoint, load_offloaded_model
from chattracker.offload.coactivation import CoactivationPredictor
from chattracker.offload.prefetch import FatePredictor
from chattracker.offload.testing import tiny_config

EXPERTS, TOP_K, LAYERS = 8, 2, 4


def rolled_model(layers: int = LAYERS):
    """A tiny Qwen3-MoE model whose router of layer l is layer 0's with rows rolled by l."""
    import transformers as tf

    config = tiny_config("qwen3_moe", layers=layers, experts=EXPERTS, top_k=TOP_K)
    torch.manual_seed(0)
    model = tf.Qwen3MoeForCausalLM(config)
    base = torch.randn(EXPERTS, config.hidden_size)
    with torch.no_grad():
        for index, layer in enumerate(model.model.layers):
            layer.mlp.gate.weight.copy_(base.roll(index, dims=0))
    return model


def shifted(experts, by: int = 1) -> list[int]:
    return [(int(e) + by) % EXPERTS for e in experts]


def test_the_prediction_for_layer_i_plus_1_comes_from_layer_i_plus_1s_router():
    gates = [layer.mlp.gate for layer in rolled_model().model.layers]
    predictor = FatePredictor(gates, EXPERTS)
    generator = torch.Generator().manual_seed(1)
    for position in range(LAYERS - 1):
        for _ in range(5):  # decode: one token; its ranking starts with the next router's top-k, in its order
            token = torch.randn(1, gates[0].hidden_dim, generator=generator)
            own = gates[position](token)[2].reshape(-1).tolist()
            prediction = predictor.predict(position, token)
            assert prediction.predicted == set(shifted(own)), (position, own, prediction.predicted)
            assert prediction.predicted != set(own)  # what this layer's own router would have said
            assert prediction.ranking[:TOP_K] == shifted(own) and sorted(prediction.ranking) == list(range(EXPERTS))
            logits = gates[position](token)[0].reshape(-1)
            assert prediction.ranking == shifted(torch.argsort(logits, descending=True).tolist())
            assert not prediction.pooled
        tokens = torch.randn(12, gates[0].hidden_dim, generator=generator)  # prefill: pooled over the tokens
        own = gates[position](tokens)[2]
        expected = torch.bincount(torch.tensor(shifted(own.reshape(-1))), minlength=EXPERTS)
        prediction = predictor.predict(position, tokens)
        assert prediction.pooled and prediction.predicted == set(shifted(own.reshape(-1)))
        assert prediction.counts == [int(expected[e]) for e in prediction.ranking]
        assert prediction.counts == sorted(prediction.counts, reverse=True) and all(prediction.counts)
        assert set(prediction.ranking) == {e for e in range(EXPERTS) if expected[e]}
    assert predictor.predict(LAYERS - 1, torch.randn(1, gates[0].hidden_dim)) is None  # no layer after the last


def test_klotskis_gate_part_also_uses_the_next_layers_router():
    gates = [layer.mlp.gate for layer in rolled_model().model.layers]
    predictor = CoactivationPredictor(gates, EXPERTS, table=None)
    tokens = torch.randn(6, gates[0].hidden_dim, generator=torch.Generator().manual_seed(2))
    for position in range(LAYERS - 1):
        own = gates[position](tokens)[2].reshape(-1)
        expected = torch.bincount(torch.tensor(shifted(own)), minlength=EXPERTS).float()
        assert torch.equal(predictor.scores(position, tokens), expected)


def test_the_engine_predicts_each_layer_from_the_next_router_on_this_layers_router_input(tmp_path):
    """Through the real model: every prediction the engine makes for layer p+1 is layer p's real choice shifted by
    one (prefill: pooled counts; decode: the top-k), which only layer p+1's router gives on layer p's router input."""
    model_dir = tmp_path / "model"
    rolled_model().save_pretrained(model_dir)
    store = convert_checkpoint(model_dir, tmp_path / "store", bits=8, group_size=32).parent
    model, engine = load_offloaded_model(model_dir, store, expert_budget=0.5, method="fate")
    made = []
    predict = engine.predictor.predict

    def recorded(position, hidden_states):
        prediction = predict(position, hidden_states)
        made.append((position, prediction))
        return prediction

    engine.predictor.predict = recorded
    engine.routing_log = []
    prompt = torch.tensor([[2, 5, 7, 3, 9, 11, 4, 6]])
    try:
        model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4, do_sample=False)
    finally:
        engine.close()
    assert [position for position, _ in made] == [0, 1, 2, 3] * 4  # 4 model calls: the prefill, 3 decode steps
    assert all(prediction is None for position, prediction in made if position == LAYERS - 1)  # no layer after it
    made = [(position, prediction) for position, prediction in made if position < LAYERS - 1]
    calls = [(position, choice) for position, choice in engine.routing_log if position < LAYERS - 1]
    pooled = 0
    for (position, prediction), (seen, choice) in zip(made, calls):
        assert position == seen
        flat = choice.reshape(-1).tolist()
        if prediction.pooled:
            pooled += 1
            counts = torch.bincount(torch.tensor(shifted(flat)), minlength=EXPERTS)
            assert prediction.counts == [int(counts[e]) for e in prediction.ranking]
        else:
            assert prediction.ranking[:TOP_K] == shifted(flat) and set(flat) != set(shifted(flat))
        assert prediction.predicted == set(shifted(flat))
    assert pooled == 3  # the prefill's three predictions; the rest are decode steps
    assert engine.stats.summary()["layers"]["1"]["predicted"] > 0  # the predictions reached the engine's scoring
