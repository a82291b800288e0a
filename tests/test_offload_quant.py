"""Round-trip error of the group quantizers and the matmul that consumes them."""

import pytest
import torch

from chattracker.offload.quant import QuantSpec, dequantize, qlinear, quantize


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("shape", [(64, 64), (96, 256)])
def test_round_trip_error_is_at_most_half_a_step(bits, shape):
    torch.manual_seed(bits)
    spec = QuantSpec.make(bits)
    weight = torch.randn(*shape) * 0.05
    restored = dequantize(quantize(weight, spec), spec, shape)
    groups = weight.reshape(shape[0], -1, spec.group)
    step = (groups.amax(-1) - groups.amin(-1)) / ((1 << bits) - 1)
    error = (restored - weight).abs().reshape(shape[0], -1, spec.group).amax(-1)
    # 0.5 step from rounding, plus the metadata's own rounding (bfloat16 zero point for INT4, fp16 otherwise)
    assert (error <= step * 0.52 + 1e-6).all()
    relative = (restored - weight).norm() / weight.norm()
    assert relative < {8: 0.01, 4: 0.12, 2: 0.5}[bits]


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_qlinear_matches_the_dequantized_matrix(bits):
    spec = QuantSpec.make(bits)
    weight = torch.randn(48, 128) * 0.05
    tensors = quantize(weight, spec)
    x = torch.randn(5, 128)
    expected = x @ dequantize(tensors, spec, (48, 128)).T
    # INT4 runs torch's int4 kernel with bfloat16 activations: 2^-8 relative rounding of the inputs
    tolerance = 2e-2 * expected.abs().max() if bits == 4 else 1e-5
    assert torch.allclose(qlinear(x, tensors, spec, (48, 128)), expected, atol=float(tolerance))


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="bits"):
        QuantSpec.make(3)
    with pytest.raises(ValueError, match="multiple of the group"):
        quantize(torch.zeros(4, 96), QuantSpec.make(4, 64))
