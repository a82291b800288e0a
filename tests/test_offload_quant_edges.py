"""Edges of the group-wise quantization: levels clamp (never wrap) when the stored half-precision minimum rounds past
the data, metadata is stored in the dtype the file layout promises, inputs of any float dtype quantize alike, INT4 on
CPU multiplies the packed weights without dequantizing, and group sizes are checked."""

from __future__ import annotations

import pytest
import torch

from chattracker.offload import quant
from chattracker.offload.quant import META_DTYPE, QuantSpec, dequantize, qlinear, quantize


@pytest.mark.parametrize("bits", [8, 2])
def test_levels_clamp_when_the_rounded_minimum_misses_the_data(bits):
    # float16 cannot hold 100.01 or 100.05: the stored minimum lands below the first row (its top level would pass
    # `levels`) and above the second (its bottom level would go below 0); a uint8 that wrapped would be off by ~0.5
    weight = torch.tensor([[100.01] * 64, [100.05] * 64])
    weight[:, 1::2] += 0.5
    spec = QuantSpec.make(bits)
    error = (dequantize(quantize(weight, spec), spec, weight.shape) - weight).abs().max()
    assert error < 0.05


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_metadata_dtype_and_any_float_input(bits):
    spec = QuantSpec.make(bits)
    weight = torch.randn(16, 128, generator=torch.Generator().manual_seed(0))
    stored = quantize(weight, spec)
    assert all(t.dtype == META_DTYPE[bits] for name, t in stored.items() if name != "qweight")
    for dtype in (torch.float16, torch.bfloat16):  # rounded to float32 first: the same files as from its float32 copy
        lower = weight.to(dtype)
        assert all(torch.equal(a, b) for a, b in zip(quantize(lower, spec).values(), quantize(lower.float(), spec).values()))


def test_int4_on_cpu_multiplies_the_packed_weights_without_dequantizing(monkeypatch):
    spec = QuantSpec.make(4)
    weight = torch.randn(32, 128, generator=torch.Generator().manual_seed(1))
    stored = quantize(weight, spec)
    x = torch.randn(3, 128, generator=torch.Generator().manual_seed(2))
    reference = x @ dequantize(stored, spec, weight.shape).t()

    def refuse(*args, **kwargs):
        raise AssertionError("INT4 on CPU must use the int4 kernel, not dequantize")

    monkeypatch.setattr(quant, "dequantize", refuse)
    out = qlinear(x, stored, spec, weight.shape)
    assert out.dtype == x.dtype and torch.allclose(out, reference, rtol=0.02, atol=0.05)


@pytest.mark.parametrize("bits", [8, 2])
def test_dequantizing_paths_return_the_inputs_dtype(bits):
    spec = QuantSpec.make(bits)
    weight = torch.randn(8, 64, generator=torch.Generator().manual_seed(3))
    stored = quantize(weight, spec)
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    out = qlinear(x, stored, spec, weight.shape)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), x.float() @ dequantize(stored, spec, weight.shape).t(), rtol=0.02, atol=0.05)


def test_group_sizes():
    assert QuantSpec.make(4, 32) == QuantSpec(4, 32) and QuantSpec.make(2) == QuantSpec(2, 32)
    for bad in (0, 3, -2):
        with pytest.raises(ValueError, match=f"group size must be a positive even number, not {bad}"):
            QuantSpec.make(8, bad)
