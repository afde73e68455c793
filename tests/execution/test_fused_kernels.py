"""The register-blocked numba conv and the fused conv + requant kernel against exact int64
references; fused programs against the same programs run op by op and without numba."""

from __future__ import annotations

import importlib.util
import re
import sys

import numpy as np
import pytest
import torch

from mpsearch.core import BitPlan
from mpsearch.demo import batches
from mpsearch.execution import ir, to_integer
from mpsearch.execution.audit import float_instructions, float_llvm_ops, integer_multiply_adds
from mpsearch.execution.kernels import FUSED, KERNELS, _numba_jit
from mpsearch.quant import quantizable_layer_names, quantize

CPU = torch.device("cpu")
NUMBA = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba not installed")


def _conv_int64(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, zp: int, k: int, stride: tuple[int, int],
                padding: tuple[int, int, int, int], dilation: tuple[int, int], groups: int) -> torch.Tensor:
    """``sum(w * (x - zp)) << k + bias`` tap by tap in int64 (padding holds real 0)."""
    (pl, pr, pt, pb), (sh, sw), (dh, dw) = padding, stride, dilation
    xp = torch.nn.functional.pad(x.long() - zp, (pl, pr, pt, pb))
    cout, cin_g, kh, kw = w.shape
    oh = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
    acc = torch.zeros(x.shape[0], cout, oh, ow, dtype=torch.int64)
    cg = cout // groups
    for g in range(groups):
        for u in range(kh):
            for v in range(kw):
                win = xp[:, g * cin_g:(g + 1) * cin_g, u * dh:u * dh + (oh - 1) * sh + 1:sh,
                         v * dw:v * dw + (ow - 1) * sw + 1:sw]
                w_tap = w[g * cg:(g + 1) * cg, :, u, v].long()
                acc[:, g * cg:(g + 1) * cg] += torch.einsum("nchw,oc->nohw", win, w_tap)
    return acc * 2**k + bias.long().view(1, -1, 1, 1)


def _requant_int64(acc: torch.Tensor, op: ir.Requant) -> torch.Tensor:
    """``clamp(floor(((acc - zp_in) * m + 2^(s-1)) / 2^s) + zp_out, lo, hi)`` (round half up), int64."""
    s = op.shift.long()
    y = (acc - op.zp_in.long()) * op.multiplier.long() + torch.where(s > 0, 2 ** (s - 1).clamp(min=0), 0)
    y = torch.div(y, 2**s, rounding_mode="floor") + op.zp_out.long()
    return torch.minimum(torch.maximum(y, op.lo.long()), op.hi.long())


def _random_conv(seed: int, kind: str) -> tuple[ir.Conv, torch.Tensor]:
    """A random conv and input: odd and even channel counts (Cout not a multiple of 16), odd image
    sizes, stride 1-2, asymmetric padding, dilation 1-2, kernels 1x1 to 5x3, batches that leave a
    partial block of output pixels. ``kind``: "dense" (groups 1), "depthwise" (3 channels, one
    filter each) or "grouped" (2 groups of 2 input channels)."""
    g = np.random.default_rng(seed)
    kh, kw, dh = int(g.choice([1, 3, 5])), int(g.choice([1, 2, 3])), int(g.integers(1, 3))
    if kind == "dense":
        cin, cout, groups = int(g.choice([1, 2, 3, 5, 16, 24])), int(g.choice([1, 7, 16, 17, 40])), 1
    elif kind == "depthwise":
        cin, cout, groups = 3, 3, 3
    else:
        cin, cout, groups = 4, 2 * int(g.choice([1, 7, 16])), 2
    n, h, w_in = int(g.integers(1, 4)), int(g.integers((kh - 1) * dh + 1, 10)), int(g.integers(kw, 10))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-128, 128, (n, cin, h, w_in), generator=gen, dtype=torch.int8)
    w = torch.randint(-128, 128, (cout, cin // groups, kh, kw), generator=gen, dtype=torch.int8)
    bias = torch.randint(-(2**20), 2**20, (cout,), generator=gen, dtype=torch.int32)
    pads = tuple(int(v) for v in g.integers(0, 3, 4))
    op = ir.Conv(name="acc", inputs=("x",), weight=w, bias=bias, bias_shift=int(g.integers(0, 4)),
                 stride=(int(g.integers(1, 3)), int(g.integers(1, 3))), padding=pads,  # type: ignore[arg-type]
                 dilation=(dh, 1), groups=groups, input_zp=int(g.integers(-128, 128)))
    return op, x


def _per_channel_requant(cout: int, out_dtype: str, gen: torch.Generator) -> ir.Requant:
    def t(lo: int, hi: int) -> torch.Tensor:
        return torch.randint(lo, hi, (cout, 1, 1), generator=gen, dtype=torch.int32)

    lo, hi = (-128, 127) if out_dtype == "int8" else (-(2**24), 2**24)
    return ir.Requant(name="y", inputs=("acc",), zp_in=torch.tensor(0, dtype=torch.int32), multiplier=t(1, 2**30),
                      shift=t(20, 40), zp_out=t(-20, 20), lo=torch.full((cout, 1, 1), lo, dtype=torch.int32),
                      hi=torch.full((cout, 1, 1), hi, dtype=torch.int32), out_dtype=out_dtype)


@NUMBA
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("kind", ["dense", "depthwise", "grouped"])
def test_numba_conv_and_fused_requant_match_int64_reference(seed: int, kind: str) -> None:
    op, x = _random_conv(seed, kind)
    gen = torch.Generator().manual_seed(seed + 100)
    ref = _conv_int64(x, op.weight, op.bias, op.input_zp, op.bias_shift, op.stride, op.padding, op.dilation,
                      op.groups)
    got = KERNELS["conv"](op, CPU, "numba")(x)
    assert got.dtype == torch.int32 and torch.equal(got.long(), ref)
    for out_dtype in ("int8", "int32"):
        rq = _per_channel_requant(op.weight.shape[0], out_dtype, gen)
        fused = FUSED[("conv", "requant")](op, rq, CPU, "numba")
        assert (fused is None) == (op.groups != 1)  # only groups-1 convs fuse
        if fused is not None:
            y = fused(x)
            assert y.dtype == getattr(torch, out_dtype)
            assert torch.equal(y.long(), _requant_int64(ref, rq))


@NUMBA
def test_numba_conv_extremes_and_partial_blocks() -> None:
    # every product (-128)(-128) = 2^14; K = 9 * 64 = 576 products, shifted by 3: 576 * 2^17 < 2^31
    x = torch.full((5, 64, 3, 3), -128, dtype=torch.int8)
    w = torch.full((17, 64, 3, 3), -128, dtype=torch.int8)
    w[16] = 127  # the 17th channel (a second block of 16, one lane used): -576 * 128 * 127
    op = ir.Conv(name="acc", inputs=("x",), weight=w, bias=torch.arange(17, dtype=torch.int32), bias_shift=3,
                 padding=(1, 1, 1, 1), input_zp=0)
    got = KERNELS["conv"](op, CPU, "numba")(x)
    assert got.shape == (5, 17, 3, 3)
    assert got[:, 0, 1, 1].tolist() == [576 * 2**14 * 8] * 5  # the centre sees all 9 taps
    assert got[:, 16, 1, 1].tolist() == [-576 * 128 * 127 * 8 + 16] * 5
    assert got[0, 3, 0, 0].item() == 4 * 64 * 2**14 * 8 + 3  # a corner: 4 taps inside the image
    lin = ir.Linear(name="acc", inputs=("x",), weight=w[:, :, 0, 0], bias=torch.zeros(17, dtype=torch.int32),
                    bias_shift=0, input_zp=-128)  # x - zp = 0 everywhere: only the bias is left
    assert torch.equal(KERNELS["linear"](lin, CPU, "numba")(x[:, :, 0, 0]), torch.zeros(5, 17, dtype=torch.int32))


@NUMBA
def test_fused_linear_requant_per_tensor() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randint(-128, 128, (7, 37), generator=g, dtype=torch.int8)
    w = torch.randint(-8, 8, (10, 37), generator=g, dtype=torch.int8)
    t = lambda v: torch.tensor(v, dtype=torch.int32)  # noqa: E731
    lin = ir.Linear(name="acc", inputs=("x",), weight=w, bias=torch.randint(-99, 99, (10,), generator=g,
                    dtype=torch.int32), bias_shift=2, input_zp=5)
    rq = ir.Requant(name="y", inputs=("acc",), zp_in=t(3), multiplier=t(3), shift=t(6), zp_out=t(-1), lo=t(-8),
                    hi=t(7), out_dtype="int8")
    acc = ((x.long() - 5) @ w.long().t()) * 4 + lin.bias.long()
    want = ((((acc - 3) * 3 + 32) >> 6) - 1).clamp(-8, 7)
    assert torch.equal(FUSED[("linear", "requant")](lin, rq, CPU, "numba")(x).long(), want)
    assert torch.equal(KERNELS["requant"](rq, CPU, "int32")(KERNELS["linear"](lin, CPU, "int32")(x)).long(), want)


@NUMBA
def test_direct_conv_machine_code_has_no_float_op() -> None:
    from mpsearch.execution.kernels import _numba_conv

    fn = _numba_conv.compile_conv(cache=False)  # a fresh compile: cached code cannot be inspected
    x = np.full((1, 3, 3, 2), -128, np.int8)
    wpk, cp = _numba_conv.pack_weights(np.full((2, 3, 3, 2), -128, np.int8))
    out = np.empty((1, 2), np.int32)
    geom = (3, 3, 1, 1, 1, 1, 0, 0, 0, 0)
    corr = np.array([5, -5], np.int32)
    fn(x.reshape(-1), x.shape, wpk, cp, _numba_conv.pack_epilogue(corr, None), 1, geom, 0, False, out)
    assert out.tolist() == [[18 * 2**15 + 5, 18 * 2**15 - 5]]
    q = np.empty((1, 2), np.int8)
    # (a * m + 2^19) >> 20, a = 18 * 2^15 +- 5 = 589829, 589819: m = 3 -> 2293775 >> 20 = 2;
    # m = 7 -> 4653021 >> 20 = 4, clamped to hi = 3
    consts = _numba_conv.pack_epilogue(corr, [np.array([3, 7]), 2**19, 20, -8, np.array([7, 3])])
    assert consts.shape == (6, 1, 16) and consts[:, 0, 2:].tolist() == [[0] * 14] * 6  # zero-padded lanes
    fn(x.reshape(-1), x.shape, wpk, cp, consts, 1, geom, 0, True, q)
    assert q.tolist() == [[2, 3]]
    assert len(fn.signatures) == 2  # int32 out (no epilogue) and int8 out (fused requant)
    for llvm, asm in zip(fn.inspect_llvm().values(), fn.inspect_asm().values()):
        body = llvm[llvm.index("define"):]
        assert float_llvm_ops(body) == []
        assert "<8 x i32>" in body  # the register block's accumulators
        assert float_instructions(asm) == []
        if sys.platform == "linux" and " avx2" in open("/proc/cpuinfo").read():
            # int16 multiply-adds on 256-bit (or 512-bit) vectors: vpmaddwd on AVX2, vpdpwssd (which
            # also adds into the accumulator) where the CPU has AVX-512 VNNI or AVX-VNNI
            madds = integer_multiply_adds(asm)
            assert madds and any(re.search(r"\b[yz]mm\d", line) for line in madds), madds[:4]


@pytest.fixture(scope="module")
def programs(demo):  # type: ignore[no-untyped-def]
    out = {}
    for name in ("small_cnn", "resnet_tiny", "mobilenet_tiny"):
        model, splits = demo(name)
        q = quantize(model, BitPlan.uniform(quantizable_layer_names(model), 4, 4), batches(splits.train, 256))
        out[name] = (to_integer(q, splits.example_inputs(2)), splits.test.tensors[0][:97])
    return out


#: kinds of the ops of each fused step (anchor first) and how many such steps each demo model has
FUSED_STEPS = {
    # conv2's requant runs before the max pool and conv3's before the flatten (_reorder): both fuse
    "small_cnn": {"conv+requant": 3, "linear+requant": 1},
    # every conv, downsample included; each residual add with the requants around it
    "resnet_tiny": {"conv+requant": 8, "linear+requant": 1, "add+requant+requant": 1, "add+requant": 1,
                    "add+requant+clamp": 1},
    "mobilenet_tiny": {"conv+requant": 8, "linear+requant": 1, "add+requant+requant": 2},  # depthwise apart
}


@NUMBA
@pytest.mark.parametrize("name", sorted(FUSED_STEPS))
def test_fused_program_gives_the_integers_of_its_ops(programs, name: str) -> None:  # type: ignore[no-untyped-def]
    imodel, x = programs[name]
    codes = imodel.quantize_input(x)
    steps = imodel.to(gemm="numba").steps()
    kinds: dict[str, int] = {}
    for step in steps:
        if len(step.ops) > 1:
            key = "+".join(imodel.ops[i].KIND for i in step.ops)
            kinds[key] = kinds.get(key, 0) + 1
    assert kinds == FUSED_STEPS[name]
    assert sorted(i for step in steps for i in step.ops) == list(range(len(imodel.ops)))  # each op once
    out_fused = imodel.run(*codes)
    every = [op.name for op in imodel.ops]  # asking for every value turns fusion off
    out_apart, kept = imodel.run(*codes, keep=every)
    assert set(kept) == set(every) and torch.equal(out_fused, out_apart)
    assert torch.equal(out_fused, imodel.to(gemm="int32").run(*codes))  # torch's int32 kernels, no numba
    imodel.to(gemm="auto")


def test_without_numba_the_torch_kernels_run(programs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    imodel, x = programs["resnet_tiny"]
    codes = imodel.quantize_input(x)
    want = imodel.to(gemm="int32").run(*codes)
    monkeypatch.setattr(_numba_jit, "available", lambda: False)
    steps = imodel.to(gemm="auto").steps()
    assert len(steps) == len(imodel.ops)  # nothing fused: the pure-torch int32 path
    assert torch.equal(imodel.run(*codes), want)
    monkeypatch.undo()
    imodel.to(gemm="auto")
