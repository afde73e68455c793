"""The packed w4a16 weight-only kernel (execution/kernels/_numba_packed_float.py, weight_only.prep_packed_w4):
its dequantised weights are the simulation's bit for bit, its outputs are within the float32
rounding bound of the exact (float64) product, and the executor runs it for one-row calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpsearch.execution import ir
from mpsearch.execution.kernels import KERNELS
from mpsearch.execution.kernels import packed as pk
from mpsearch.execution.kernels import weight_only as wo

CPU = torch.device("cpu")
pytestmark = pytest.mark.skipif(not pk.usable(CPU), reason="packed kernels need numba and AVX-512 VNNI")


def _op(n: int, k: int, group: int | None, unsigned: bool, bits: int = 4, bias: bool = True) -> ir.WeightOnlyLinear:
    g = torch.Generator().manual_seed(n + k + bits)
    lo, hi = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    codes = torch.randint(lo, hi + 1, (n, k), generator=g).to(torch.int8)
    groups = k // group if group else 1
    scale = torch.rand(n, groups, generator=g) * 0.05 + 0.01
    zp = torch.randint(lo, hi + 1, (n, groups), generator=g).int()
    return ir.WeightOnlyLinear(name="y", inputs=("x",), codes=codes, scale=scale, zp=zp,
                               bias=torch.randn(n, generator=g) if bias else None, group_size=group, w_bits=bits)


def _dequantized(op: ir.WeightOnlyLinear) -> torch.Tensor:
    """The simulation's float32 weight: ``(codes - zp) * scale`` per group."""
    n, k = op.codes.shape
    g = op.scale.shape[1]
    return ((op.codes.float().reshape(n, g, k // g) - op.zp.float()[..., None]) * op.scale[..., None]).reshape(n, k)


CASES = [(8, 128, 128, False), (37, 300, None, True), (64, 1024, 256, False), (5, 256, 128, True)]


@pytest.mark.parametrize("n, k, group, unsigned", CASES)
def test_dequantised_weights_are_the_simulations_bit_for_bit(n: int, k: int, group: int | None, unsigned: bool) -> None:
    op = _op(n, k, group, unsigned, bias=False)
    run = wo.prep_packed_w4(op, CPU)
    assert run is not None
    eye = torch.eye(k)[[0, 1, 63, 64, 127, k - 1]]  # one-hot rows: y = one column of W, one product each
    want = _dequantized(op)[:, [0, 1, 63, 64, 127, k - 1]].t()
    for row in range(eye.shape[0]):  # one row a call: the packed kernel's own calls
        assert torch.equal(run(eye[row:row + 1])[0], want[row])


@pytest.mark.parametrize("n, k, group, unsigned", CASES)
def test_outputs_within_the_float32_rounding_bound(n: int, k: int, group: int | None, unsigned: bool) -> None:
    op = _op(n, k, group, unsigned)
    run = wo.prep_packed_w4(op, CPU)
    x = torch.randn(3, k, generator=torch.Generator().manual_seed(k)) * 3
    y = torch.cat([run(x[i:i + 1]) for i in range(3)])
    w = _dequantized(op).double()
    exact = x.double() @ w.t() + op.bias.double()  # float32 products and sums are exact in float64 here
    # The kernel's float32 sums: each lane a chain of k/32 FMAs (two chains a row, low and high
    # nibbles, padded to whole blocks of 128), their sum, a 4-level tree over 16 lanes, + bias: at
    # most n_ops = ceil(k/128)*4 + 6 roundings on any path, so |y - exact| <= n_ops * 2^-24 *
    # (sum |w x| + |bias|) (the standard bound gamma_n, first order).
    n_ops = -(-k // 128) * 4 + 6
    bound = n_ops * 2.0**-24 * ((x.double().abs() @ w.abs().t()) + op.bias.double().abs()) * 1.001
    err = (y.double() - exact).abs()
    assert bool((err <= bound).all())
    assert float(err.max()) > 0 or k < 128  # a real float sum, not an exact one by accident


def test_skipped_where_the_layout_does_not_fit() -> None:
    assert wo.prep_packed_w4(_op(8, 256, 64, False), CPU) is None  # groups of 64: not whole blocks of 128
    assert wo.prep_packed_w4(_op(8, 256, None, False, bits=8), CPU) is None  # 8 bits: int8 kernel
    assert wo.prep_packed_w4(_op(8, 256, 128, False, bits=3), CPU) is not None  # 3-bit codes fit a nibble
    pk.ENABLED[0] = False
    try:
        assert wo.prep_packed_w4(_op(8, 256, 128, False), CPU) is None
    finally:
        pk.ENABLED[0] = True


def test_executor_runs_it_for_one_row_and_the_previous_kernels_for_more() -> None:
    op = _op(32, 256, 128, False)  # both the packed kernel and torch's int4 kernel apply
    run = KERNELS["wo_linear"](op, CPU, "auto")
    assert run.packed_weight.nbytes == 32 * 256 // 2  # type: ignore[attr-defined]  # two codes a byte
    x1 = torch.randn(1, 1, 256, generator=torch.Generator().manual_seed(0))
    assert torch.equal(run(x1), wo.prep_packed_w4(op, CPU)(x1))  # decoding: the packed kernel
    x8 = torch.randn(8, 256, generator=torch.Generator().manual_seed(1))
    assert torch.equal(run(x8), wo._int4(op, CPU)(x8))  # 8 rows: torch's int4 kernel (bf16)
    odd = _op(24, 256, 128, False, bits=3)  # 3 bits: torch's int4 kernel does not apply
    assert wo._int4(odd, CPU) is None
    run = KERNELS["wo_linear"](odd, CPU, "auto")
    assert torch.equal(run(x8), wo._unpacked(odd, CPU)(x8))  # 8 rows: the unpacked form, as before
    exact = x8.double() @ _dequantized(odd).double().t() + odd.bias.double()
    assert float((run(x8[:1]).double() - exact[:1]).abs().max()) < 1e-5 * float(exact.abs().max())


def test_tile_layout_by_hand() -> None:
    from mpsearch.execution.kernels._numba_packed_float import pack_tiles

    codes = np.zeros((2, 128), np.int8)
    codes[1, 0], codes[1, 64] = -8, 7  # row 1, block 0: byte 0 = (−8+8) | (7+8) << 4
    scale = np.array([[2.0], [3.0]], np.float32)
    tiles, sz = pack_tiles(codes, scale, np.array([[-1.0], [-2.0]], np.float32))
    assert tiles.shape == (1, 1, 4, 64) and sz.shape == (1, 1, 4, 2)  # rows padded to 4, side by side
    assert tiles[0, 0, 1, 0] == 0xF0 and tiles[0, 0, 0, 0] == 0x88
    assert sz[0, 0].tolist() == [[2.0, -1.0], [3.0, -2.0], [0.0, 0.0], [0.0, 0.0]]
