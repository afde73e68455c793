"""The packed low-bit conv kernel (execution/kernels/packed.prep_packed_conv, _numba_packed_conv.py,
_numba_packed.gemm_py): bit for bit the int64 reference's integers (int2 / int3 / int4, 1x1 and 3x3,
strides, padding with the input zero point, conv1d, pixel counts not a multiple of the 4-pixel tile,
a fused requant), and the executor's choice between it and the int8 path per call."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mpsearch.execution import ir
from mpsearch.execution.kernels import FUSED, KERNELS
from mpsearch.execution.kernels import packed as pk
from mpsearch.execution.kernels.layers import layer_corr

CPU = torch.device("cpu")
pytestmark = pytest.mark.skipif(not pk.usable(CPU), reason="packed kernels need numba and AVX-512 VNNI")


def _conv(bits: int, cin: int, cout: int, k: int, stride: int = 1, pad: int = 1, zp: int = 3, shift: int = 1,
          seed: int = 0, spatial_dims: int = 2) -> ir.Conv:
    g = torch.Generator().manual_seed(seed + bits)
    lo = -(1 << (bits - 1))
    kh = k if spatial_dims == 2 else 1
    w = torch.randint(lo, -lo, (cout, cin, kh, k), dtype=torch.int8, generator=g)
    b = torch.randint(-5000, 5000, (cout,), dtype=torch.int32, generator=g)
    pads = (pad, pad, pad if spatial_dims == 2 else 0, pad if spatial_dims == 2 else 0)
    return ir.Conv(name="y", inputs=("x",), weight=w, bias=b, bias_shift=shift, stride=(stride if spatial_dims == 2 else 1, stride),
                   padding=pads, input_zp=zp, w_bits=bits, a_bits=8, spatial_dims=spatial_dims)


def _reference(op: ir.Conv, x: torch.Tensor) -> torch.Tensor:
    """int64: taps outside the image hold the zero point, ``((x - zp) * w summed) << shift + bias``."""
    x4 = x.unsqueeze(2) if op.spatial_dims == 1 else x
    xp = F.pad(x4.long(), list(op.padding), value=op.input_zp) - op.input_zp
    w = op.weight.long()
    cout, _, kh, kw = w.shape
    n, _, h, wd = xp.shape
    sh, sw = op.stride
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    acc = torch.zeros(n, cout, oh, ow, dtype=torch.int64)
    for u in range(kh):
        for v in range(kw):
            patch = xp[:, :, u:u + sh * (oh - 1) + 1:sh, v:v + sw * (ow - 1) + 1:sw]
            acc += torch.einsum("nchw,oc->nohw", patch, w[:, :, u, v])
    out = ((acc << op.bias_shift) + op.bias.long()[:, None, None]).to(torch.int32)
    return out.squeeze(2) if op.spatial_dims == 1 else out


CASES = [  # bits, cin, cout, k, stride, pad, h
    (4, 3, 16, 3, 1, 1, 9), (2, 16, 33, 3, 2, 1, 11), (3, 40, 24, 1, 1, 0, 7), (4, 64, 8, 3, 1, 0, 5),
    (4, 130, 5, 3, 2, 1, 6)]


@pytest.mark.parametrize("bits, cin, cout, k, stride, pad, h", CASES)
def test_packed_conv_is_bit_exact(bits: int, cin: int, cout: int, k: int, stride: int, pad: int, h: int) -> None:
    op = _conv(bits, cin, cout, k, stride, pad, seed=cin)
    x = torch.randint(-128, 128, (2, cin, h, h + 1), dtype=torch.int8, generator=torch.Generator().manual_seed(h))
    run = pk.prep_packed_conv(op, layer_corr(op, CPU))
    assert run is not None
    y = run(x)
    assert y.dtype == torch.int32 and torch.equal(y, _reference(op, x))
    assert torch.equal(y, KERNELS["conv"](op, CPU, "int32")(x))  # the torch int32 backend's integers
    kb = 2 if bits == 2 else 4
    per_row = -(-cin * k * k // 128) * 128 * kb // 8  # whole blocks of 128 codes
    assert run.packed_weight.nbytes == -(-cout // 4) * 4 * per_row  # type: ignore[attr-defined]


def test_packed_conv1d_and_extremes() -> None:
    op = _conv(4, 12, 6, 3, stride=2, pad=1, spatial_dims=1)
    x = torch.randint(-128, 128, (3, 12, 17), dtype=torch.int8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(pk.prep_packed_conv(op, layer_corr(op, CPU))(x), _reference(op, x))
    # every weight -8, every input -128 with zp 127, no padding: sum = -8 * -255 * (9 * 200)
    w = torch.full((4, 200, 3, 3), -8, dtype=torch.int8)
    big = ir.Conv(name="y", inputs=("x",), weight=w, bias=torch.zeros(4, dtype=torch.int32), input_zp=127,
                  w_bits=4, a_bits=8)
    y = pk.prep_packed_conv(big, layer_corr(big, CPU))(torch.full((1, 200, 3, 3), -128, dtype=torch.int8))
    assert y.shape == (1, 4, 1, 1) and int(y[0, 0, 0, 0]) == 8 * 255 * 1800 == 3672000


def _requant(cout: int) -> ir.Requant:
    g = torch.Generator().manual_seed(3)
    return ir.Requant(name="z", inputs=("y",), zp_in=torch.tensor(0),
                      multiplier=torch.randint(1 << 21, 1 << 23, (cout, 1, 1), generator=g),
                      shift=torch.full((cout, 1, 1), 30), zp_out=torch.tensor(-5), lo=torch.tensor(-128),
                      hi=torch.tensor(127), out_dtype="int8", bits=8)


@pytest.mark.parametrize("bits", [2, 4])
def test_fused_requant_matches_the_separate_ops(bits: int) -> None:
    op = _conv(bits, 24, 10, 3)
    g = torch.Generator().manual_seed(4)
    rq = _requant(10)
    x = torch.randint(-128, 128, (1, 24, 6, 7), dtype=torch.int8, generator=g)
    fused = pk.prep_packed_conv(op, layer_corr(op, CPU), rq)
    want = KERNELS["requant"](rq, CPU, "int32")(KERNELS["conv"](op, CPU, "int32")(x))
    got = fused(x)
    assert got.dtype == torch.int8 and torch.equal(got, want)
    assert int(got.min()) < 0 < int(got.max())


def test_executor_runs_packed_convs_where_they_pay() -> None:
    op = _conv(4, 96, 64, 3)  # 8x8 at batch 1: 64 px x 64 x 864 = 3.5 M MACs -> packed
    kernel = KERNELS["conv"](op, CPU, "auto")
    assert hasattr(kernel, "packed_weight")
    x1 = torch.randint(-128, 128, (1, 96, 8, 8), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
    x8 = torch.randint(-128, 128, (8, 96, 8, 8), dtype=torch.int8, generator=torch.Generator().manual_seed(1))
    for x in (x1, x8):  # 64 pixels: the packed kernel; 512 pixels: the int8 path; the same integers
        assert torch.equal(kernel(x), _reference(op, x))
    calls = []
    orig = pk.prep_packed_conv

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        run = orig(*args, **kw)

        def wrapped(x):  # type: ignore[no-untyped-def]
            calls.append(x.shape[0])
            return run(x)
        wrapped.packed_weight = run.packed_weight
        return wrapped

    pk.prep_packed_conv = spy  # type: ignore[assignment]
    try:
        kernel = KERNELS["conv"](op, CPU, "auto")
        kernel(x1), kernel(x8)
    finally:
        pk.prep_packed_conv = orig  # type: ignore[assignment]
    assert calls == [1]  # only the batch-1 call ran packed
    small = _conv(4, 16, 16, 3)  # a demo-sized conv: 64 px x 16 x 144 = 0.15 M MACs
    y_small = KERNELS["conv"](small, CPU, "auto")(x1[:, :16])
    assert torch.equal(y_small, _reference(small, x1[:, :16]))
    w8 = _conv(8, 96, 64, 3)
    assert not hasattr(KERNELS["conv"](w8, CPU, "auto"), "packed_weight")  # 8 bits: the int8 path
    fused = FUSED[("conv", "requant")](op, _requant(64), CPU, "auto")  # a fused conv + requant: packed too
    assert hasattr(fused, "packed_weight")
    assert torch.equal(fused(x1), KERNELS["requant"](_requant(64), CPU, "int32")(_reference(op, x1)))


def test_packed_gemm_is_integer_only_and_uses_vnni() -> None:
    from mpsearch.execution.audit import float_instructions, float_llvm_ops
    from mpsearch.execution.kernels._numba_jit import jit
    from mpsearch.execution.kernels._numba_packed import _microkernel, gemm_py, pack_rows

    _microkernel()
    fn = jit(gemm_py, cache=False)  # compiled here (a kernel loaded from the disk cache has no IR text)
    w = pack_rows(np.ones((4, 128), np.int8), 4)
    cols = np.ones((4, 128), np.int8)
    out = np.zeros((3, 4), np.int32)
    fn(cols, np.full(4, 128, np.int64), w, 4, 0, np.zeros((6, 4), np.int64), False, out)
    assert out.tolist() == [[128] * 4] * 3
    for llvm in fn.inspect_llvm().values():  # type: ignore[attr-defined]
        assert float_llvm_ops(llvm[llvm.index("define"):]) == []
    for asm in fn.inspect_asm().values():  # type: ignore[attr-defined]
        assert float_instructions(asm) == []
        assert "vpdpbusd" in asm
