"""Integer kernels against exact references: conv (plain, grouped, depthwise, strided, dilated,
1-d), linear, average-pool rounding and the integer add with two scales."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mpsearch.execution import ir
from mpsearch.execution.audit import float_instructions, float_llvm_ops, integer_multiply_adds
from mpsearch.execution.kernels import KERNELS
from mpsearch.execution.ops import Builder, Rep
from mpsearch.execution.program import IntegerModel

CPU = torch.device("cpu")


def _conv_ref(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, zp: int, k: int, stride: tuple[int, int],
              pad: tuple[int, int], dilation: tuple[int, int], groups: int) -> torch.Tensor:
    """Exact reference in float64 (all values are small integers, so float64 is exact)."""
    xp = F.pad(x.double() - zp, (pad[1], pad[1], pad[0], pad[0]))  # padding holds real 0 = code zp
    y = F.conv2d(xp, w.double(), None, stride, 0, dilation, groups) * 2**k + bias.double().view(1, -1, 1, 1)
    return y.round().to(torch.int64)


NUMBA = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba not installed")
GEMM_BACKENDS = ["int32", "int_mm", pytest.param("numba", marks=NUMBA)]


@pytest.mark.parametrize("gemm", GEMM_BACKENDS)
@pytest.mark.parametrize("cin,cout,groups,stride,pad,dil", [
    (3, 5, 1, (1, 1), (1, 1), (1, 1)),
    (4, 6, 2, (2, 1), (0, 1), (1, 1)),
    (6, 6, 6, (1, 1), (1, 1), (1, 1)),   # depthwise
    (6, 12, 6, (2, 2), (2, 2), (2, 2)),  # depthwise x2 multiplier, strided, dilated
    (40, 7, 1, (1, 1), (1, 1), (1, 1)),  # K = 360 >= NUMBA_MIN_K: the numba kernel runs
    (80, 6, 2, (1, 2), (1, 0), (1, 1)),  # grouped, K = 360 per group
])
def test_conv_kernel_exact(gemm: str, cin: int, cout: int, groups: int, stride: tuple[int, int],
                           pad: tuple[int, int], dil: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-128, 128, (2, cin, 7, 6), generator=g, dtype=torch.int8)
    w = torch.randint(-8, 8, (cout, cin // groups, 3, 3), generator=g, dtype=torch.int8)
    bias = torch.randint(-5000, 5000, (cout,), generator=g, dtype=torch.int32)
    zp, k = -37, 3
    op = ir.Conv(name="y", inputs=("x",), weight=w, bias=bias, bias_shift=k, stride=stride,
                 padding=(pad[1], pad[1], pad[0], pad[0]), dilation=dil, groups=groups, input_zp=zp)
    got = KERNELS["conv"](op, CPU, gemm)(x)
    assert got.dtype == torch.int32
    assert torch.equal(got.long(), _conv_ref(x, w, bias, zp, k, stride, pad, dil, groups))


def test_conv1d_and_linear_exact() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(-128, 128, (3, 4, 9), generator=g, dtype=torch.int8)
    w = torch.randint(-128, 128, (5, 4, 1, 3), generator=g, dtype=torch.int8)
    b = torch.randint(-100, 100, (5,), generator=g, dtype=torch.int32)
    op = ir.Conv(name="y", inputs=("x",), weight=w, bias=b, stride=(1, 2), padding=(1, 1, 0, 0), spatial_dims=1,
                 input_zp=5)
    got = KERNELS["conv"](op, CPU, "auto")(x)
    ref = F.conv1d(F.pad(x.double() - 5, (1, 1)), w[:, :, 0].double(), b.double(), stride=2)
    assert torch.equal(got.long(), ref.long())
    xl = torch.randint(-128, 128, (4, 10), generator=g, dtype=torch.int8)
    wl = torch.randint(-128, 128, (3, 10), generator=g, dtype=torch.int8)
    op = ir.Linear(name="y", inputs=("x",), weight=wl, bias=b[:3], input_zp=-3, bias_shift=2)
    for gemm in ("int32", "int_mm", "numba"):
        got = KERNELS["linear"](op, CPU, gemm)(xl)
        ref = ((xl.long() + 3) @ wl.long().t()) * 4 + b[:3].long()
        assert torch.equal(got.long(), ref)


def test_avgpool_sum_then_requant_rounds_half_up() -> None:
    # 2x2 windows of codes: sums 10, 5, 6, -6 -> means 2.5, 1.25, 1.5, -1.5 -> half up: 3, 1, 2, -1
    x = torch.tensor([[[[1, 2, 1, 1], [3, 4, 1, 2], [1, 0, -1, -2], [2, 3, -1, -2]]]], dtype=torch.int8)
    t = lambda v: torch.tensor(v, dtype=torch.int32)  # noqa: E731
    ops = (ir.AvgPoolSum(name="s", inputs=("x",), kernel=(2, 2), stride=(2, 2)),
           ir.Requant(name="y", inputs=("s",), zp_in=t(0), multiplier=t(1), shift=t(2), zp_out=t(0), lo=t(-128),
                      hi=t(127), out_dtype="int8"))
    model = IntegerModel((ir.InputQuant("x", "", 1.0, 0, -128, 127, 8, (1, 4, 4)),), ops,
                         ir.OutputSpec("y", 1.0, 0, (1, 2, 2)), {})
    assert model.run(x).reshape(-1).tolist() == [3, 1, 2, -1]


def test_integer_add_with_two_scales() -> None:
    # a: scale 0.5, zp 3; b: scale 0.2, zp 0. Common scale = 0.2 / 2^16: the finer input scale,
    # halved 16 times (the sum of the bounds, 131 * 0.5 / s + 128 * 0.2 / s + 2 = 2.98e7, stays
    # below 2^26), so both rescales are exact integer multiplies: 2.5 * 2^16 = 163840 and 2^16.
    b = Builder("half_up")
    ra = Rep("a", "int8", (4,), np.float64(0.5), np.int64(3), np.int64(-128), np.int64(127))
    rb = Rep("b", "int8", (4,), np.float64(0.2), np.int64(0), np.int64(-128), np.int64(127))
    ca, cb = b.common_scale([ra, rb], "add")
    assert float(ca.scale) == float(cb.scale) == 0.2 / 2**16
    assert [(int(op.multiplier), int(op.shift)) for op in b.ops] == [(163840, 0), (65536, 0)]
    b.emit(ir.Add(name="y", inputs=(ca.value, cb.value)))
    model = IntegerModel((ir.InputQuant("a", "", 0.5, 3, -128, 127, 8, (4,)),
                          ir.InputQuant("b", "", 0.2, 0, -128, 127, 8, (4,))),
                         tuple(b.ops), ir.OutputSpec("y", 0.2 / 2**16, 0, (4,)), {})
    qa = torch.tensor([[7, 4, 3, -100]], dtype=torch.int8)  # reals 2.0, 0.5, 0.0, -51.5
    qb = torch.tensor([[1, -1, 5, 0]], dtype=torch.int8)  # reals 0.2, -0.2, 1.0, 0.0
    # the exact sums 2.2, 0.3, 1.0, -51.5 in steps of 0.2 / 2^16 (no rounding before the next requant)
    assert model.run(qa, qb).tolist() == [[11 * 65536, 98304, 5 * 65536, -16875520]]
    # an int32 accumulator (bound 2^26 at scale 1e-4) is already fine: taken as is, no halving
    acc = Rep("acc", "int32", (4,), np.float64(1e-4), np.int64(0), np.int64(-(2**26)), np.int64(2**26))
    c_acc, c_b = Builder("half_up").common_scale([acc, rb], "add")
    assert c_acc is acc and float(c_b.scale) == 1e-4


@NUMBA
@pytest.mark.parametrize("m,k,n", [(1, 32, 1), (37, 288, 64), (5, 4096, 3)])
def test_numba_gemm_matches_int32_matmul_bit_exact(m: int, k: int, n: int) -> None:
    from mpsearch.execution.kernels import _numba_kernels

    g = torch.Generator().manual_seed(k)
    a = torch.randint(-128, 128, (m, k), generator=g, dtype=torch.int8)
    w = torch.randint(-128, 128, (n, k), generator=g, dtype=torch.int8)
    a[0] = -128  # extreme rows: (-128)(-128) = 2^14 per product, K * 2^14 in all
    w[0] = -128
    if m > 1:
        a[1], w[-1] = 127, -128
    corr = torch.randint(-(2**20), 2**20, (n,), generator=g, dtype=torch.int32)
    shift = 2 if k < 4096 else 0
    got = _numba_kernels.gemm_i16(a.to(torch.int16).numpy(), w.to(torch.int16).numpy(), corr.numpy(), shift)
    ref = torch.addmm(corr, a.to(torch.int32), w.to(torch.int32).t() << shift)  # the int32 path
    assert got.dtype == np.int32
    assert torch.equal(torch.from_numpy(got), ref)
    assert got[0, 0] == k * 2**14 * 2**shift + int(corr[0])


def _assert_no_float_op(fn: object) -> str:
    """No floating-point instruction in a numba function's LLVM IR or machine code; returns the asm."""
    (llvm,) = fn.inspect_llvm().values()  # type: ignore[attr-defined]
    body = llvm[llvm.index("define"):]  # the jitted function and its wrappers
    assert float_llvm_ops(body) == []
    (asm,) = fn.inspect_asm().values()  # type: ignore[attr-defined]
    assert float_instructions(asm) == []
    return asm


def _has_avx2() -> bool:
    return sys.platform == "linux" and " avx2" in open("/proc/cpuinfo").read()


@NUMBA
def test_numba_kernel_machine_code_has_no_float_op() -> None:
    """The dtype audit cannot see inside numba, so read the compiled code instead."""
    from mpsearch.execution.kernels import _numba_kernels

    fn = _numba_kernels.compile_kernel(cache=False)  # a fresh compile: cached code cannot be inspected
    a = np.full((3, 64), -128, np.int16)
    out = np.empty((3, 2), np.int32)
    fn(a, a[:2].copy(), np.array([1, -1], np.int32), 1, out)
    assert (out == np.array([1, -1]) + 64 * 2**15).all()
    asm = _assert_no_float_op(fn)
    if _has_avx2():  # the int16 dot product the speed comes from (vpmaddwd, or vpdpwssd with VNNI)
        assert integer_multiply_adds(asm)


@NUMBA
def test_numba_depthwise_requant_machine_code_has_no_float_op() -> None:
    """The same audit for the depthwise kernel and the one-pass requant (the direct conv's is in
    test_direct_conv.py)."""
    import numba

    from mpsearch.execution.kernels import _numba_kernels as nk

    def fresh(py: object) -> object:  # a fresh compile (cached code cannot be inspected)
        return numba.njit(cache=False, fastmath=False, nogil=True)(py)

    x = np.full((1, 3, 3, 2), -128, np.int8)  # one 3x3 window of two channels, all -128
    corr = np.array([5, -5], np.int32)
    dw, rq = fresh(nk.depthwise_py), fresh(nk.requant_py)
    out = np.empty((1, 1, 1, 2), np.int32)
    dw(x, np.full((3, 3, 2), -128, np.int32), corr, 2, (1, 1), (1, 1), out)
    assert out.reshape(-1).tolist() == [9 * 2**16 + 5, 9 * 2**16 - 5]
    acc = np.array([[-(2**31), 2**31 - 1, 1000, -1000]], np.int32)
    one = lambda v: np.full(4, v, np.int64)  # noqa: E731
    q = np.empty((1, 4), np.int8)
    # (x * 3 + 2^4 + (2 << 5)) >> 5, clamped to [-128, 127]: 1000 -> (3000 + 80) >> 5 = 96; -1000 -> -92
    rq(acc, one(3), one(16 + (2 << 5)), one(5), one(-128), one(127), q)
    assert q.tolist() == [[-128, 127, 96, -92]]
    for fn in (dw, rq):
        _assert_no_float_op(fn)


@NUMBA
@pytest.mark.parametrize("cin,cout,kernel,stride,pad,dil", [
    (1, 16, (3, 3), (1, 1), (1, 1), (1, 1)),   # one input channel, padded to two
    (3, 8, (3, 3), (2, 2), (1, 1), (1, 1)),    # odd channels, 8 of a block of 16 outputs
    (16, 16, (3, 3), (1, 1), (1, 1), (1, 1)),  # resnet_tiny's layer1
    (32, 24, (3, 3), (2, 1), (0, 2), (1, 1)),
    (5, 7, (5, 3), (1, 2), (2, 1), (2, 1)),    # rectangular, dilated, strided
    (2, 3, (2, 2), (3, 3), (0, 0), (1, 2)),    # K = 8, no padding
])
def test_numba_direct_conv_exact(cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int],
                                 pad: tuple[int, int], dil: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(cin * 100 + cout)
    x = torch.randint(-128, 128, (3, cin, 9, 8), generator=g, dtype=torch.int8)
    w = torch.randint(-128, 128, (cout, cin, *kernel), generator=g, dtype=torch.int8)
    x[0], w[0] = -128, -128  # extremes: (-128)(-128) = 2^14 per product
    x[1, :, ::2], w[-1] = 127, -128
    bias = torch.randint(-5000, 5000, (cout,), generator=g, dtype=torch.int32)
    zp, k = 11, 1
    op = ir.Conv(name="y", inputs=("x",), weight=w, bias=bias, bias_shift=k, stride=stride,
                 padding=(pad[1], pad[1], pad[0], pad[0]), dilation=dil, groups=1, input_zp=zp)
    got = KERNELS["conv"](op, CPU, "numba")(x)
    ref = _conv_ref(x, w, bias, zp, k, stride, pad, dil, 1)
    assert got.dtype == torch.int32
    assert torch.equal(got.long(), ref)
    assert torch.equal(got, KERNELS["conv"](op, CPU, "int32")(x))  # the im2col + int32 addmm path


def _requant_op(c: int, per_channel: bool, out_dtype: str, g: torch.Generator) -> ir.Requant:
    shape = (c, 1, 1) if per_channel else ()

    def t(lo: int, hi: int) -> torch.Tensor:
        return torch.randint(lo, hi, shape, generator=g, dtype=torch.int32)

    lo, hi = (-128, 127) if out_dtype == "int8" else (-(2**20), 2**20)
    return ir.Requant(name="y", inputs=("x",), zp_in=t(-50, 50), multiplier=t(1, 2**15), shift=t(0, 24),
                      zp_out=t(-20, 20), lo=torch.full(shape, lo, dtype=torch.int32),
                      hi=torch.full(shape, hi, dtype=torch.int32), out_dtype=out_dtype)


@NUMBA
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("out_dtype", ["int8", "int32"])
@pytest.mark.parametrize("in_dtype,layout", [
    ("int32", "channels_last"), ("int32", "contiguous"), ("int8", "channels_last"), ("int32", "strided")])
def test_numba_requant_matches_torch_requant(per_channel: bool, out_dtype: str, in_dtype: str, layout: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from mpsearch.execution.kernels import _numba_kernels as nk

    compiled, calls = nk.requant_kernel(), []

    def counted(*args: object) -> None:
        calls.append(1)
        compiled(*args)

    monkeypatch.setattr(nk, "requant_kernel", lambda: counted)
    g = torch.Generator().manual_seed(7)
    op = _requant_op(6, per_channel, out_dtype, g)
    lim = 2**24 if in_dtype == "int32" else 128
    x = torch.randint(-lim, lim, (4, 5, 7, 6), generator=g, dtype=torch.int32).permute(0, 3, 1, 2)  # NCHW view
    x[0, :, 0, :3] = torch.tensor([-lim, lim - 1, 0], dtype=torch.int32)
    x = x.to(getattr(torch, in_dtype))
    if layout == "contiguous":
        x = x.contiguous()
    elif layout == "strided":  # neither layout: the torch form runs
        x = x[:, :, ::2]
    got = KERNELS["requant"](op, CPU, "numba")(x)
    assert len(calls) == (0 if layout == "strided" or (layout == "contiguous" and per_channel) else 1)
    want = KERNELS["requant"](op, CPU, "int32")(x)  # the int64 torch form
    assert got.dtype == want.dtype == DTYPES_T[out_dtype]
    assert torch.equal(got, want)
    # one element by hand: round half up of (x - zp_in) * m / 2^s, plus zp_out, clamped
    c = 2 if per_channel else 0
    zp_in, m, s, zp_out, lo, hi = (int(getattr(op, f).reshape(-1)[c]) for f in
                                   ("zp_in", "multiplier", "shift", "zp_out", "lo", "hi"))
    v = int(x[1, 2, 2, 4])
    num = (v - zp_in) * m
    want_v = min(max((num + (1 << s >> 1)) // 2**s + zp_out, lo), hi)
    assert int(got[1, 2, 2, 4]) == want_v


DTYPES_T = {"int8": torch.int8, "int32": torch.int32}
