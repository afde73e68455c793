"""2- and 3-bit weight-only layers keep their codes bit-packed (bits / 8 bytes a weight) and unpack
them per call: exact round trip, and the kernel's output equals the dequantized weight's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mpsearch.execution import ir
from mpsearch.execution.kernels.weight_only import pack_bits, prepare_wo_linear, unpack_bits


@pytest.mark.parametrize("bits", [2, 3, 5, 7])
def test_pack_round_trip_and_size(bits: int) -> None:
    g = torch.Generator().manual_seed(bits)
    codes = torch.randint(0, 2**bits, (37, 11), generator=g)  # 407 codes: not a multiple of 8
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == bits * 51  # ceil(407 / 8) = 51 groups of 8
    assert torch.equal(unpack_bits(packed, bits, codes.numel()).view(37, 11), codes)
    # 8 codes of 3 bits by hand, code i at bits 3i..3i+2: 111 000 001 010 011 100 101 110 (high to
    # low) = bytes 11100000 10100111 00101110, stored low byte first
    if bits == 3:
        by = pack_bits(torch.tensor([6, 5, 4, 3, 2, 1, 0, 7]), 3)
        assert by.tolist() == [0b00101110, 0b10100111, 0b11100000]


@pytest.mark.parametrize("bits", [2, 3])
def test_packed_kernel_matches_the_dequantized_weight(bits: int) -> None:
    torch.manual_seed(0)
    n, k, group = 24, 64, 32
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    codes = torch.randint(lo, hi + 1, (n, k), dtype=torch.int8)
    scale = torch.rand(n, k // group) + 0.1
    zp = torch.zeros(n, k // group, dtype=torch.int32)
    op = ir.WeightOnlyLinear(name="y", inputs=("x",), source="t", codes=codes, scale=scale, zp=zp, bias=None,
                             group_size=group, w_bits=bits)
    run = prepare_wo_linear(op, torch.device("cpu"), None)  # type: ignore[arg-type]
    held = [c.cell_contents for c in run.__closure__ if isinstance(c.cell_contents, torch.Tensor)]
    weight_bytes = max(t.numel() * t.element_size() for t in held)
    assert weight_bytes == n * k * bits // 8  # only the packed codes: no int8 or float copy
    x = torch.randn(5, k)
    w = (codes.float().view(n, k // group, group) * scale[..., None]).view(n, k)
    torch.testing.assert_close(run(x), F.linear(x, w), rtol=0, atol=1e-5)
