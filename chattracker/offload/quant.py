"""Group-wise asymmetric (min/max) weight quantization of expert matrices, and the matmuls that use it.

INT4 is packed in torch's CPU int4 layout (``_convert_weight_to_int4pack_for_cpu``) so a file read from disk is
ready for ``_weight_int4pack_mm_for_cpu`` without any transcoding: the decode path never dequantizes.
INT8 and INT2 are packed plainly (INT2: four values per byte along the input dimension) and are dequantized per call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

DEFAULT_GROUP = {8: 64, 4: 64, 2: 32}
# int4mm wants scales/zeros in the activation dtype; bfloat16 is its fast CPU dtype. INT8/INT2 keep fp16 metadata
# because an INT8 step is finer than bfloat16's 8-bit mantissa can place a group minimum.
META_DTYPE = {8: torch.float16, 4: torch.bfloat16, 2: torch.float16}


@dataclass(frozen=True)
class QuantSpec:
    """Bits per weight and the group length along the input dimension."""

    bits: int
    group: int

    @classmethod
    def make(cls, bits: int, group: int | None = None) -> "QuantSpec":
        if bits not in DEFAULT_GROUP:
            raise ValueError(f"bits must be 8, 4 or 2, not {bits}")
        group = DEFAULT_GROUP[bits] if group is None else int(group)
        if group <= 0 or group % 2:
            raise ValueError(f"group size must be a positive even number, not {group}")
        return cls(bits, group)


def quantize(weight: torch.Tensor, spec: QuantSpec) -> dict[str, torch.Tensor]:
    """Quantize an [N, K] matrix per group of ``spec.group`` input columns; returns the tensors to store."""
    rows, cols = weight.shape
    if cols % spec.group:
        raise ValueError(f"input dimension {cols} is not a multiple of the group size {spec.group}")
    levels = (1 << spec.bits) - 1
    w = weight.detach().to(torch.float32).reshape(rows, cols // spec.group, spec.group)
    low = w.amin(dim=-1)
    high = w.amax(dim=-1)
    meta = META_DTYPE[spec.bits]
    scale = ((high - low) / levels).clamp_min(1e-8).to(meta).float()
    low = low.to(meta).float()  # quantize against the stored (rounded) metadata so dequantization is consistent
    q = torch.round((w - low[..., None]) / scale[..., None]).clamp_(0, levels).to(torch.uint8).reshape(rows, cols)
    if spec.bits == 4:
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)
        # int4mm computes (q - 8) * scale + zero, so zero = min + 8 * scale; layout [K/group, N, 2].
        zero = low + 8 * scale
        scales_zeros = torch.stack((scale.t(), zero.t()), dim=-1).to(meta).contiguous()
        return {"qweight": packed.contiguous(), "scales_zeros": scales_zeros}
    if spec.bits == 2:
        q = q.reshape(rows, cols // 4, 4)
        q = q[..., 0] | (q[..., 1] << 2) | (q[..., 2] << 4) | (q[..., 3] << 6)
    return {"qweight": q.contiguous(), "scale": scale.to(meta).contiguous(), "min": low.to(meta).contiguous()}


def dequantize(tensors: dict[str, torch.Tensor], spec: QuantSpec, shape: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`quantize` (up to rounding), as float32 [N, K]."""
    rows, cols = shape
    groups = cols // spec.group
    if spec.bits == 4:
        q = unpack_int4(tensors["qweight"], rows, cols).float().reshape(rows, groups, spec.group)
        scale = tensors["scales_zeros"][..., 0].float().t()
        zero = tensors["scales_zeros"][..., 1].float().t()
        return ((q - 8) * scale[..., None] + zero[..., None]).reshape(rows, cols)
    q = tensors["qweight"]
    if spec.bits == 2:
        q = torch.stack([(q >> shift) & 3 for shift in (0, 2, 4, 6)], dim=-1)
    q = q.reshape(rows, groups, spec.group).float()
    scale = tensors["scale"].float()
    low = tensors["min"].float()
    return torch.addcmul(low[..., None], q, scale[..., None]).reshape(rows, cols)


def qlinear(x: torch.Tensor, tensors: dict[str, torch.Tensor], spec: QuantSpec, shape: tuple[int, int]) -> torch.Tensor:
    """``x @ W.T`` for a quantized W of ``shape`` [N, K]; result in x's dtype."""
    if spec.bits == 4 and x.device.type == "cpu":
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.to(torch.bfloat16), tensors["qweight"], spec.group, tensors["scales_zeros"])
        return out.to(x.dtype)
    return F.linear(x, dequantize(tensors, spec, shape).to(device=x.device, dtype=x.dtype))


def int4_layout_fingerprint() -> str:
    """Hash of how this torch build packs INT4 on CPU; a store packed elsewhere must match it to be read."""
    probe = (torch.arange(64 * 128, dtype=torch.int64).reshape(64, 128) * 7 % 16).to(torch.int32)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(probe, 1)
    return hashlib.sha1(packed.numpy().tobytes()).hexdigest()[:16]


@lru_cache(maxsize=8)
def _int4_positions(rows: int, cols: int) -> torch.Tensor:
    """For each nibble of the packed stream, the flat [N, K] position it came from.

    The packing is pure data movement, so packing four probes that each carry four bits of every position's index
    reveals the permutation without depending on the kernel's internal tile sizes.
    """
    index = torch.arange(rows * cols, dtype=torch.int64).reshape(rows, cols)
    positions = torch.zeros(rows * cols, dtype=torch.int64)
    bit = 0
    while (1 << bit) < rows * cols:
        probe = ((index >> bit) & 15).to(torch.int32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(probe, 1)
        nibbles = torch.stack((packed & 15, packed >> 4), dim=-1).reshape(-1).to(torch.int64)
        positions |= nibbles << bit
        bit += 4
    return positions


def unpack_int4(packed: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Values 0..15 as uint8 [N, K] from the torch CPU int4 layout."""
    nibbles = torch.stack((packed & 15, packed >> 4), dim=-1).reshape(-1).cpu()
    out = torch.empty(rows * cols, dtype=torch.uint8)
    out[_int4_positions(rows, cols)] = nibbles
    return out.reshape(rows, cols).to(packed.device)
