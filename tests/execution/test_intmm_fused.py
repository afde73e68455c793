"""The "int_mm_fused" backend (torch._int_mm + numba im2col and epilogue) against exact int64
references, and the whole demo programs against the generic int32 kernels, bit for bit."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from mpsearch.core import BitPlan
from mpsearch.demo import batches
from mpsearch.execution import ir, to_integer
from mpsearch.execution.audit import float_instructions, float_llvm_ops
from mpsearch.execution.kernels import _numba_intmm, intmm_cpu
from mpsearch.quant import quantizable_layer_names, quantize

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba not installed")


def _conv_int64(x: torch.Tensor, op: ir.Conv) -> torch.Tensor:
    """``sum(w * (x - zp)) << k + bias`` tap by tap in int64 (padding holds a real 0), groups 1."""
    (pl, pr, pt, pb), (sh, sw), (dh, dw) = op.padding, op.stride, op.dilation
    xp = torch.nn.functional.pad(x.long() - op.input_zp, (pl, pr, pt, pb))
    cout, _, kh, kw = op.weight.shape
    oh = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
    acc = torch.zeros(x.shape[0], cout, oh, ow, dtype=torch.int64)
    for u in range(kh):
        for v in range(kw):
            win = xp[:, :, u * dh:u * dh + (oh - 1) * sh + 1:sh, v * dw:v * dw + (ow - 1) * sw + 1:sw]
            acc += torch.einsum("nchw,oc->nohw", win, op.weight[:, :, u, v].long())
    return acc * 2**op.bias_shift + op.bias.long().view(1, -1, 1, 1)


def _requant_int64(acc: torch.Tensor, op: ir.Requant) -> torch.Tensor:
    """``clamp(floor(((acc - zp_in) * m + 2^(s-1)) / 2^s) + zp_out, lo, hi)``, int64."""
    s = op.shift.long()
    y = (acc - op.zp_in.long()) * op.multiplier.long() + torch.where(s > 0, 2 ** (s - 1).clamp(min=0), 0)
    y = torch.div(y, 2**s, rounding_mode="floor") + op.zp_out.long()
    return torch.minimum(torch.maximum(y, op.lo.long()), op.hi.long())


def _random_conv(seed: int) -> tuple[ir.Conv, torch.Tensor, ir.Requant]:
    g = np.random.default_rng(seed)
    kh, kw, dh = int(g.choice([1, 3, 5])), int(g.choice([1, 2, 3])), int(g.integers(1, 3))
    cin, cout = int(g.choice([1, 3, 16, 24])), int(g.choice([1, 7, 24, 40]))
    n, h, w_in = int(g.integers(1, 5)), int(g.integers((kh - 1) * dh + 1, 10)), int(g.integers(kw, 10))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-128, 128, (n, cin, h, w_in), generator=gen, dtype=torch.int8)
    w = torch.randint(-128, 128, (cout, cin, kh, kw), generator=gen, dtype=torch.int8)
    op = ir.Conv(name="acc", inputs=("x",), weight=w, bias=torch.randint(-(2**20), 2**20, (cout,), generator=gen,
                 dtype=torch.int32), bias_shift=int(g.integers(0, 4)), stride=(int(g.integers(1, 3)),
                 int(g.integers(1, 3))), padding=tuple(int(v) for v in g.integers(0, 3, 4)),  # type: ignore[arg-type]
                 dilation=(dh, 1), input_zp=int(g.integers(-128, 128)))
    t = lambda lo, hi: torch.randint(lo, hi, (cout, 1, 1), generator=gen, dtype=torch.int32)  # noqa: E731
    rq = ir.Requant(name="y", inputs=("acc",), zp_in=torch.tensor(0, dtype=torch.int32), multiplier=t(1, 2**30),
                    shift=t(20, 40), zp_out=t(-20, 20), lo=torch.full((cout, 1, 1), -128, dtype=torch.int32),
                    hi=torch.full((cout, 1, 1), 127, dtype=torch.int32), out_dtype="int8")
    return op, x, rq


@pytest.mark.parametrize("seed", range(16))
def test_int_mm_conv_and_fused_requant_match_int64_reference(seed: int) -> None:
    op, x, rq = _random_conv(seed)
    ref = _conv_int64(x, op)
    acc = intmm_cpu.prep_gemm_conv(op)(x)  # the _int_mm path itself, whatever the size
    assert acc.dtype == torch.int32 and torch.equal(acc.long(), ref)
    y = intmm_cpu.prep_gemm_conv(op, rq)(x)
    assert y.dtype == torch.int8 and torch.equal(y.long(), _requant_int64(ref, rq))
    big = x.repeat(300 // x.shape[0] + 1, 1, 1, 1)  # past MIN_ROWS: the hybrid takes _int_mm where it pays
    assert torch.equal(intmm_cpu.prep_hybrid(op, rq)(big).long(), _requant_int64(_conv_int64(big, op), rq))


def test_int_mm_extremes_linear_and_per_tensor_requant() -> None:
    # every product (-128)(-128) = 2^14; K = 9 * 64 = 576 products, shifted by 3: 576 * 2^17 < 2^31
    x = torch.full((5, 64, 3, 3), -128, dtype=torch.int8)
    w = torch.full((17, 64, 3, 3), -128, dtype=torch.int8)
    w[16] = 127
    op = ir.Conv(name="acc", inputs=("x",), weight=w, bias=torch.arange(17, dtype=torch.int32), bias_shift=3,
                 padding=(1, 1, 1, 1), input_zp=0)
    got = intmm_cpu.prep_gemm_conv(op)(x)
    assert got[:, 0, 1, 1].tolist() == [576 * 2**14 * 8] * 5  # the centre sees all 9 taps
    assert got[:, 16, 1, 1].tolist() == [-576 * 128 * 127 * 8 + 16] * 5
    assert got[0, 3, 0, 0].item() == 4 * 64 * 2**14 * 8 + 3  # a corner: 4 taps inside the image
    g = torch.Generator().manual_seed(3)
    xl = torch.randint(-128, 128, (300, 37), generator=g, dtype=torch.int8)
    wl = torch.randint(-8, 8, (30, 37), generator=g, dtype=torch.int8)
    t = lambda v: torch.tensor(v, dtype=torch.int32)  # noqa: E731
    lin = ir.Linear(name="acc", inputs=("x",), weight=wl, bias=torch.randint(-99, 99, (30,), generator=g,
                    dtype=torch.int32), bias_shift=2, input_zp=5)
    rq = ir.Requant(name="y", inputs=("acc",), zp_in=t(3), multiplier=t(3), shift=t(6), zp_out=t(-1), lo=t(-8),
                    hi=t(7), out_dtype="int8")
    acc = ((xl.long() - 5) @ wl.long().t()) * 4 + lin.bias.long()
    want = ((((acc - 3) * 3 + 32) >> 6) - 1).clamp(-8, 7)
    for prep in (intmm_cpu.prep_gemm_conv, intmm_cpu.prep_hybrid):
        assert torch.equal(prep(lin, rq)(xl).long(), want)
        assert torch.equal(prep(lin)(xl).long(), acc)
        assert torch.equal(prep(lin, rq)(xl[:1]).long(), want[:1])  # batch 1 (the numba direct path)


def test_which_layers_take_int_mm() -> None:
    def conv(cout: int, cin: int, k: int) -> ir.Conv:
        return ir.Conv(name="c", inputs=("x",), weight=torch.zeros(cout, cin, k, k, dtype=torch.int8),
                       bias=torch.zeros(cout, dtype=torch.int32))
    assert intmm_cpu.mm_pays(conv(32, 16, 3)) and intmm_cpu.mm_pays(conv(16, 16, 1))
    assert not intmm_cpu.mm_pays(conv(16, 16, 3))  # 3x3, 16 -> 16: the im2col is not paid back
    assert not intmm_cpu.mm_pays(conv(16, 1, 3))  # K = 9


def test_epilogue_and_im2col_machine_code_have_no_float_op() -> None:
    ep, im2col = _numba_intmm.kernel("epilogue", cache=False), _numba_intmm.kernel("im2col", cache=False)
    acc = np.array([[589829, 589819]], np.int32)
    packed = _numba_intmm.pack_consts(np.array([5, -5]), [np.array([3, 7]), 2**19, 20, -8, np.array([7, 3])])
    assert packed is not None
    out = np.empty((1, 2), np.int8)
    ep(acc, 0, *packed, True, out)
    assert out.tolist() == [[2, 3]]  # (589834 * 3 + 2^19) >> 20 = 2; (589814 * 7 + 2^19) >> 20 = 4 -> hi 3
    x = np.arange(8, dtype=np.int8).reshape(1, 2, 2, 2)
    cols = np.empty((4, 8), np.int8)
    im2col(x, (2, 2, 1, 1, 1, 1, 1, 1, 2, 2), -1, cols)  # 2x2 kernel, padding 1 top/left
    assert cols[0].tolist() == [-1, -1, -1, -1, -1, -1, 0, 1] and cols[3].tolist() == list(range(8))
    assert _numba_intmm.pack_consts(np.array([0]), [np.array([2**31]), 0, 31, 0, 1]) is None  # m beyond int32
    for fn in (ep, im2col):
        for llvm, asm in zip(fn.inspect_llvm().values(), fn.inspect_asm().values()):
            assert float_llvm_ops(llvm[llvm.index("define"):]) == []
            assert float_instructions(asm) == []


@pytest.mark.parametrize("name", ["small_cnn", "resnet_tiny", "mobilenet_tiny"])
def test_demo_programs_match_the_int32_kernels(demo, name: str) -> None:  # type: ignore[no-untyped-def]
    model, splits = demo(name)
    q = quantize(model, BitPlan.uniform(quantizable_layer_names(model), 8, 8), batches(splits.train, 256))
    imodel = to_integer(q, splits.example_inputs(2))
    x = splits.test.tensors[0][:300]  # 300 images: every layer past MIN_ROWS; 1 image: none
    for xs in (x, x[:1]):
        codes = imodel.quantize_input(xs)
        want = imodel.to(gemm="int32").run(*codes)
        assert torch.equal(imodel.to(gemm="int_mm_fused").run(*codes), want)


@pytest.mark.parametrize("scale", [0.0123456, 0.25, 1 / 3])
def test_one_pass_input_boundary_gives_the_codes_of_input_quant(scale: float) -> None:
    from mpsearch.execution.kernels.boundary import quantize_input

    iq = ir.InputQuant(name="x", source="x", scale=scale, zero_point=3, qmin=-128, qmax=127, bits=8,
                       sample_shape=(4,))
    ties = (torch.arange(-300, 300).float() + 0.5) * scale  # exact halves where the division is exact
    x = torch.randn(2000, generator=torch.Generator().manual_seed(0)) * 5
    for xs in (x, ties, torch.tensor([float("inf"), -float("inf"), 1e30, -1e30, 0.0, -0.0])):
        got = quantize_input(xs, scale, 3, -128, 127)
        assert got is not None and got.dtype == torch.int8 and torch.equal(got, iq(xs))
    assert quantize_input(x.double(), scale, 3, -128, 127) is None  # not float32: the torch form runs
    assert torch.equal(quantize_input(torch.tensor([0.5 * scale, 1.5 * scale, 2.5 * scale]), scale, 0, -128, 127),
                       torch.tensor([0, 2, 2], dtype=torch.int8))  # half to even
