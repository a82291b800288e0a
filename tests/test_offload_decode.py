"""Offloaded decode checked step by step against stock transformers, and the hub layout of fused experts.

Protects the one-token decode path of the engine (``OffloadEngine._compute`` with one token: the expert outputs
and their top-k weights), which prefill-only comparisons cannot see, and the transpose that converts the Hugging
Face hub files of Qwen3-VL-MoE (``gate_up_proj [E, H, 2I]``, ``down_proj [E, I, H]``).

Reference: ``generate(..., output_logits=True, return_dict_in_generate=True)`` of the stock transformers class.
- INT8: against the unquantized model. Stated tolerance: the same tokens, and every step's logits within
  0.5% of that step's largest logit magnitude (measured: at most 0.13% on these models).
- INT4: against the stock model loaded with the store's dequantised expert weights (INT4 computes with bfloat16
  activations). Same tokens, logits within 0.5% (measured: at most 0.07%).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from chattracker.offload import ExpertStore, convert_checkpoint, load_offloaded_model
from chattracker.offload.quant import dequantize
from chattracker.offload.runtime import moe_blocks
from chattracker.offload.testing import KINDS, image_inputs, save_tiny_model

PROMPT = torch.tensor([[2, 5, 7, 3, 9, 11, 4, 6, 8, 10]])
NEW_TOKENS = 10
TOLERANCE = 0.005  # of each step's largest reference logit magnitude
GENERATE = dict(max_new_tokens=NEW_TOKENS, do_sample=False, output_logits=True, return_dict_in_generate=True)


def _stock(model_dir):
    import transformers

    architecture = transformers.AutoConfig.from_pretrained(model_dir).architectures[0]
    return getattr(transformers, architecture).from_pretrained(model_dir).eval()


def _generate(model, inputs=None):
    inputs = inputs or {"input_ids": PROMPT, "attention_mask": torch.ones_like(PROMPT)}
    with torch.no_grad():
        return model.generate(**inputs, **GENERATE)


def _with_dequantised_experts(model, store: ExpertStore):
    """``model`` with every expert replaced by what the store holds, dequantised to float32."""
    with torch.no_grad():
        for layer, block in moe_blocks(model):
            for expert in range(store.num_experts):
                tensors = store.parse(store.read(layer, expert))
                block.experts.gate_up_proj[expert].copy_(dequantize(tensors["gate_up"], store.spec, store.shapes["gate_up"]))
                block.experts.down_proj[expert].copy_(dequantize(tensors["down"], store.spec, store.shapes["down"]))
    return model


def assert_same_decode(output, reference, what: str) -> None:
    """Same tokens, and each step's logits within TOLERANCE of the reference's largest magnitude."""
    assert torch.equal(output.sequences, reference.sequences), f"{what}: tokens differ from stock transformers"
    assert len(output.logits) == len(reference.logits) == NEW_TOKENS
    for step, (ours, theirs) in enumerate(zip(output.logits, reference.logits)):
        error = float((ours - theirs).abs().max() / theirs.abs().max())
        assert error <= TOLERANCE, f"{what}: decode step {step} logits off by {error:.4%} of the largest logit"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("offload_decode")
    return {kind: save_tiny_model(kind, root / kind, with_tokenizer=False) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_offloaded_decode_matches_stock_transformers_step_by_step(checkpoints, tmp_path, kind):
    """Protects the one-token decode path: INT8 against the unquantized stock model, INT4 against the stock model
    with the dequantised experts, for fate, lod and resident under a budget that forces paging."""
    model_dir = checkpoints[kind]
    references = {8: _generate(_stock(model_dir))}
    stores = {bits: convert_checkpoint(model_dir, tmp_path / f"int{bits}", bits=bits, group_size=32).parent
              for bits in (8, 4)}
    references[4] = _generate(_with_dequantised_experts(_stock(model_dir), ExpertStore(stores[4])))
    for bits, store in stores.items():
        for method in ("fate", "lod", "resident"):
            model, engine = load_offloaded_model(model_dir, store, expert_budget=0.3, method=method)
            try:
                output = _generate(model)
            finally:
                engine.close()
            if method != "resident":
                assert engine.stats.summary()["misses"] > 0  # the budget made the engine page experts in
            assert_same_decode(output, references[bits], f"{kind} INT{bits} {method}")


def test_qwen3_vl_decode_after_an_image_prompt_matches_stock_transformers(checkpoints, tmp_path):
    """The same with an image in the prompt (vision tower, deepstack features and 3-D rotary positions in prefill,
    then text-only decode steps)."""
    model_dir = checkpoints["qwen3_vl_moe"]
    reference = _generate(_stock(model_dir), image_inputs())
    store = convert_checkpoint(model_dir, tmp_path / "int8", bits=8, group_size=32).parent
    model, engine = load_offloaded_model(model_dir, store, expert_budget=0.3, method="fate")
    try:
        output = _generate(model, image_inputs())
    finally:
        engine.close()
    assert_same_decode(output, reference, "qwen3_vl_moe INT8 fate with an image")


def _hub_layout(source, target) -> None:
    """Copy a saved Qwen3-VL-MoE folder, rewriting its fused experts the way the hub files hold them."""
    import shutil

    shutil.copytree(source, target)
    tensors = load_file(source / "model.safetensors")
    for key in [k for k in tensors if k.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
        tensors[key] = tensors[key].transpose(1, 2).contiguous()  # [E, 2I, H] -> [E, H, 2I]; [E, H, I] -> [E, I, H]
    save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})


# hidden 64; expert width 48: no matrix is square, the real model's case (hidden 2048, width 768); 32: the stored
# gate_up is square ([64, 64]), only down tells the layout; 64: down is square, only gate_up tells it
@pytest.mark.parametrize("width", [48, 32, 64])
def test_hub_layout_of_fused_experts_converts_to_the_same_store(tmp_path, width):
    """Protects the transpose for the hub layout (the real Qwen3-VL-30B files hold [E, H, 2I] / [E, I, H]): the
    store of a hub-layout folder is byte for byte the store of the save_pretrained folder, and the offloaded hub
    folder decodes like stock transformers. (Stock transformers transposes hub files only where the shape differs
    from its own, so it reads a square matrix of either layout as its own: it is the reference only at width 48.)"""
    saved = save_tiny_model("qwen3_vl_moe", tmp_path / "saved", with_tokenizer=False, width=width)
    hub = tmp_path / "hub"
    _hub_layout(saved, hub)
    shapes = {k: tuple(v.shape) for k, v in load_file(hub / "model.safetensors").items() if "experts" in k}
    assert shapes["model.language_model.layers.0.mlp.experts.gate_up_proj"] == (8, 64, 2 * width)
    assert shapes["model.language_model.layers.0.mlp.experts.down_proj"] == (8, width, 64)
    if width == 48:
        with torch.no_grad():
            # Equal up to float rounding: stock transformers transposes the hub tensors at load, and a matmul
            # over the transposed memory may sum in another order on another CPU (seen on an AMD EPYC: not
            # bit-equal, though every weight is).
            torch.testing.assert_close(_stock(hub)(PROMPT).logits, _stock(saved)(PROMPT).logits, rtol=1e-5, atol=1e-5)
    ours = ExpertStore(convert_checkpoint(saved, tmp_path / "store_saved", bits=8, group_size=16).parent)
    theirs = ExpertStore(convert_checkpoint(hub, tmp_path / "store_hub", bits=8, group_size=16).parent)
    for layer in ours.layers:
        for expert in range(ours.num_experts):
            assert bytes(theirs.read(layer, expert)) == bytes(ours.read(layer, expert)), (layer, expert)
    if width == 48:
        model, engine = load_offloaded_model(hub, tmp_path / "store_hub", expert_budget=0.3, method="fate")
        try:
            output = _generate(model)
        finally:
            engine.close()
        assert_same_decode(output, _generate(_stock(hub)), "hub layout INT8 fate")
