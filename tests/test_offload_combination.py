"""How the engine combines expert outputs: for each token, the sum over its top-k slots of the slot's weight times
that expert's FFN output, down(act(gate(x)) * up(x)); checked call by call against the stock transformers experts
module holding the store's dequantised weights, for one token (the decode path) and several (prefill)."""

from __future__ import annotations

import pytest
import torch

from chattracker.offload import ExpertStore, convert_checkpoint, load_offloaded_model
from chattracker.offload.runtime import moe_blocks
from chattracker.offload.testing import save_tiny_model
from tests.test_offload_decode import _stock, _with_dequantised_experts

EXPERTS, TOP_K = 8, 2


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("offload_combination")
    model_dir = save_tiny_model("qwen3_moe", root / "model", with_tokenizer=False, top_k=TOP_K)
    store = convert_checkpoint(model_dir, root / "store", bits=8, group_size=32).parent
    stock = _with_dequantised_experts(_stock(model_dir), ExpertStore(store))
    return model_dir, store, stock


def routing(tokens: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct experts per token in random order, and unnormalised positive weights (each slot's own)."""
    index = torch.stack([torch.randperm(EXPERTS, generator=generator)[:TOP_K] for _ in range(tokens)])
    return index, torch.rand(tokens, TOP_K, generator=generator) + 0.1


@pytest.mark.parametrize("method, budget", [("resident", 1.0), ("lod", 0.5)])
def test_each_call_sums_the_weighted_outputs_of_its_top_k_experts(models, method, budget):
    model_dir, store, stock = models
    model, engine = load_offloaded_model(model_dir, store, expert_budget=budget, method=method)
    generator = torch.Generator().manual_seed(3)
    try:
        for (layer, ours), (_, theirs) in zip(moe_blocks(model), moe_blocks(stock)):
            for tokens in (1, 2, 7):
                hidden = torch.randn(tokens, theirs.gate.hidden_dim, generator=generator)
                index, weights = routing(tokens, generator)
                with torch.no_grad():
                    expected = theirs.experts(hidden, index, weights)
                    got = ours.experts(hidden, index, weights)
                assert got.shape == expected.shape == hidden.shape and got.dtype == hidden.dtype
                torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=f"layer {layer}, {tokens} token(s)")
    finally:
        engine.close()


def test_an_expert_chosen_by_several_tokens_gets_each_tokens_own_slot_weight(models):
    model_dir, store, stock = models
    model, engine = load_offloaded_model(model_dir, store, expert_budget=1.0, method="resident")
    (_, ours), (_, theirs) = moe_blocks(model)[0], moe_blocks(stock)[0]
    hidden = torch.randn(3, theirs.gate.hidden_dim, generator=torch.Generator().manual_seed(4))
    index = torch.tensor([[5, 2], [2, 5], [1, 5]])  # expert 5 in slot 0, 1 and 1
    weights = torch.tensor([[0.7, 0.3], [0.2, 0.9], [0.5, 0.4]])
    try:
        with torch.no_grad():
            torch.testing.assert_close(ours.experts(hidden, index, weights), theirs.experts(hidden, index, weights),
                                       rtol=1e-4, atol=1e-5)
            alone = ours.experts(hidden[1:2], index[1:2], weights[1:2])  # the decode path gives the same row
            torch.testing.assert_close(alone[0], theirs.experts(hidden, index, weights)[1], rtol=1e-4, atol=1e-5)
    finally:
        engine.close()
