"""Fate's prefill cold tail: a store's second, fewer-bit tier of every expert, read for the least-demanded experts
of a prefill and never used by a decode step.

Tolerance: with a 30% INT2 tail the prefill logits stay within 15% of the largest logit magnitude of the unquantized
model (INT4 alone: 5%, see test_offload_runtime); the measured errors are printed with -s.
"""

import pytest
import torch

from chattracker.cli import main
from chattracker.offload import ExpertStore, ExpertStoreError, convert_checkpoint, load_offloaded_model
from chattracker.offload.quant import dequantize
from chattracker.offload.testing import save_tiny_model

PROMPT = torch.arange(2, 26)[None]  # 24 tokens: every expert of the tiny models gets some, unevenly


@pytest.fixture(scope="module")
def cold_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("offload_cold")
    model_dir = save_tiny_model("qwen3_moe", root / "model", with_tokenizer=False)
    convert_checkpoint(model_dir, root / "store", bits=4, group_size=32, cold_bits=2)
    return model_dir, root / "store"


def test_convert_writes_a_smaller_checksummed_cold_tier(cold_store):
    model_dir, store_dir = cold_store
    store = ExpertStore(store_dir)
    assert store.cold is not None and store.cold.spec.bits == 2 and store.cold.spec.group == 32
    assert store.cold.expert_bytes < store.expert_bytes
    assert set(store.cold.entries) == set(store.main.entries)
    hot, cold = store.parse(store.read(1, 3)), store.parse(store.read(1, 3, cold=True), cold=True)
    for matrix, shape in store.shapes.items():  # the two tiers hold the same weights, INT2 more coarsely
        w4 = dequantize(hot[matrix], store.spec, shape)
        w2 = dequantize(cold[matrix], store.cold.spec, shape)
        assert 0 < float((w4 - w2).abs().mean()) < 0.5 * float(w4.abs().mean())
    damaged = store.path(1, 3, cold=True)
    data = bytearray(damaged.read_bytes())
    data[7] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(ExpertStoreError, match=r"cold/layer001/expert0003\.bin is corrupt"):
        ExpertStore(store_dir).read(1, 3, cold=True)
    data[7] ^= 0xFF
    damaged.write_bytes(bytes(data))


def test_cold_tier_must_have_fewer_bits_and_bytes(cold_store, tmp_path, monkeypatch):
    from chattracker.offload import convert as convert_module

    with pytest.raises(ExpertStoreError, match="fewer bits"):
        convert_checkpoint(cold_store[0], tmp_path / "store", bits=4, cold_bits=4)
    # INT2 with a scale and minimum per 2 weights is larger than INT4 g32: refused after the first expert
    real_write, writes = convert_module._TierWriter.write, []
    monkeypatch.setattr(convert_module._TierWriter, "write",
                        lambda self, *args: (writes.append(args[:2]), real_write(self, *args))[1])
    with pytest.raises(ExpertStoreError, match="cold tier experts .* are larger"):
        convert_checkpoint(cold_store[0], tmp_path / "store", bits=4, group_size=32, cold_bits=2, cold_group_size=2)
    assert len(writes) == 2  # one expert of each tier, not the whole model
    assert list(tmp_path.iterdir()) == []  # nothing left: no store, no staging folder


def test_cold_tail_needs_a_cold_tier_and_a_share_below_one(cold_store, tmp_path):
    model_dir, store_dir = cold_store
    convert_checkpoint(model_dir, tmp_path / "plain", bits=4, group_size=32)
    with pytest.raises(ExpertStoreError, match="no cold tier.*--cold-bits 2"):
        load_offloaded_model(model_dir, tmp_path / "plain", expert_budget=0.5, cold_tail=0.25)
    with pytest.raises(ValueError, match="cold_tail"):
        load_offloaded_model(model_dir, store_dir, expert_budget=0.5, cold_tail=1.0)


def _record_computes(engine) -> list[tuple[int, int, bool, int, int]]:
    """(layer, expert, cold, tokens in the call, tokens routed to the expert) for every expert computed."""
    seen, compute = [], engine._compute

    def recording(entry, act_fn, hidden_states, top_k_index, top_k_weights, output):
        seen.append((entry.layer, entry.expert, entry.cold, hidden_states.shape[0],
                     int((top_k_index == entry.expert).sum())))
        return compute(entry, act_fn, hidden_states, top_k_index, top_k_weights, output)

    engine._compute = recording
    return seen


@pytest.mark.parametrize("method", ["fate", "lod"])
def test_cold_tail_serves_only_the_least_demanded_prefill_experts(cold_store, method):
    model_dir, store_dir = cold_store
    # one prefill pass (no chunks), so each layer's demand in the prompt is decided in one call
    model, engine = load_offloaded_model(model_dir, store_dir, expert_budget=0.5, method=method, cold_tail=0.3,
                                         prefill_chunk=None)
    seen = _record_computes(engine)
    try:
        model.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=6, do_sample=False)
    finally:
        engine.close()
    stats = engine.stats.summary()
    assert stats["loads_cold"] > 0 and stats["bytes_read_cold"] == stats["loads_cold"] * engine.store.cold.expert_bytes
    assert stats["peak_resident_bytes"] <= engine.budget_bytes
    assert not [s for s in seen if s[2] and s[3] == 1]  # decode steps never compute with a cold expert
    assert [s for s in seen if s[3] == 1]  # ... though decode did run
    prefill_calls = {}
    for layer, expert, cold, tokens, routed in seen:
        if tokens > 1:
            prefill_calls.setdefault(layer, []).append((routed, cold))
    top_k = engine.top_k
    for layer, experts in prefill_calls.items():
        cold_routed = sum(routed for routed, cold in experts if cold)
        if method == "lod":  # no prediction: the tail is exactly the least-demanded experts, <= 30% of assignments
            assert cold_routed <= 0.3 * PROMPT.shape[1] * top_k
            if cold_routed:
                assert max(r for r, c in experts if c) <= min(r for r, c in experts if not c)
    assert any(cold for experts in prefill_calls.values() for _, cold in experts)


def test_cold_tail_keeps_prefill_logits_close(cold_store):
    import transformers

    model_dir, store_dir = cold_store
    with torch.no_grad():
        expected = transformers.Qwen3MoeForCausalLM.from_pretrained(model_dir).eval()(PROMPT).logits
        scale = float(expected.abs().max())
        errors = {}
        for tail in (0.0, 0.3):
            model, engine = load_offloaded_model(model_dir, store_dir, expert_budget=0.5, method="lod", cold_tail=tail)
            try:
                errors[tail] = float((model(PROMPT).logits - expected).abs().max()) / scale
                assert (engine.stats.loads_cold > 0) == (tail > 0)
            finally:
                engine.close()
    print(f"prefill logits error / max |logit|: INT4 {errors[0.0]:.4f}, 30% INT2 tail {errors[0.3]:.4f}")
    assert errors[0.0] <= 0.05 and errors[0.3] <= 0.15


def test_cli_convert_with_a_cold_tier_and_bad_cold_tail(cold_store, tmp_path, capsys):
    assert main(["offload", "convert", str(cold_store[0]), str(tmp_path / "store"), "--group", "32", "--cold-bits", "2"]) == 0
    assert "cold tier: INT2" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["offload", "generate", "model", "store", "--prompt", "x", "--cold-tail", "1.5"])
    assert exit_info.value.code == 2 and "share in [0, 1)" in capsys.readouterr().err
