"""Requant before max pool / flatten (``_reorder``), the numba max pool and the fused residual add
(``kernels.rowops_cpu``) against int64 references and the ops run apart, bit for bit."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from mpsearch.execution import ir
from mpsearch.execution._reorder import commute_requants
from mpsearch.execution._steps import plan_steps
from mpsearch.execution.audit import float_instructions, float_llvm_ops
from mpsearch.execution.kernels import _numba_rowops, rowops_cpu
from mpsearch.execution.kernels.elementwise import prepare_clamp
from mpsearch.execution.kernels.pooling import prepare_maxpool
from mpsearch.execution.kernels.requant import prepare_requant

CPU = torch.device("cpu")
NUMBA = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba not installed")
I32 = torch.int32


def _t(v: object) -> torch.Tensor:
    return torch.as_tensor(v, dtype=I32)


def _requant_int64(x: torch.Tensor, op: ir.Requant) -> torch.Tensor:
    """``clamp(round(((x - zp_in) * m) / 2^s) + zp_out, lo, hi)`` in int64: half up by floor division,
    half to even by exact remainders."""
    s, m = op.shift.long(), op.multiplier.long()
    prod = (x.long() - op.zp_in.long()) * m
    q = torch.div(prod, 2**s, rounding_mode="floor")
    rem = prod - q * 2**s
    half = torch.where(s > 0, 2 ** (s - 1).clamp(min=0), 0)
    up = (rem > half) | ((rem == half) & (s > 0))
    if op.rounding == "half_even":
        up = (rem > half) | ((rem == half) & (s > 0) & (q % 2 == 1))
    y = q + up.long() + op.zp_out.long()
    return torch.minimum(torch.maximum(y, op.lo.long()), op.hi.long())


def _random_requant(g: torch.Generator, c: int, rounding: str, out_dtype: str = "int8", lo: int = -128,
                    hi: int = 127, min_m: int = 0) -> ir.Requant:
    def ch(a: int, b: int) -> torch.Tensor:
        return torch.randint(a, b, (c, 1, 1), generator=g, dtype=I32)

    m = ch(min_m, 2**20)
    m[0] = 0  # a constant map is non-decreasing too
    return ir.Requant(name="y", inputs=("p",), zp_in=_t(int(torch.randint(-50, 50, (), generator=g))),
                      multiplier=m, shift=ch(8, 30), zp_out=ch(-20, 20), lo=_t(lo), hi=_t(hi), out_dtype=out_dtype,
                      rounding=rounding)


def _tied_int32(g: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """int32 with many equal values (ties in every window) and the int32 extremes."""
    few = torch.randint(-4, 4, shape, generator=g, dtype=I32) * 2**20
    wide = torch.randint(-(2**31), 2**31 - 1, shape, generator=g, dtype=I32)
    x = torch.where(torch.rand(shape, generator=g) < 0.5, few, wide)
    x.view(-1)[:4] = torch.tensor([-(2**31), 2**31 - 1, 0, -1], dtype=I32)
    return x


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("rounding", ["half_up", "half_even"])
def test_requant_commutes_with_max_pool_and_relu_bit_for_bit(seed: int, rounding: str) -> None:
    g = torch.Generator().manual_seed(seed)
    x = _tied_int32(g, (3, 5, 9, 8))
    relu_lo = int(torch.randint(-128, 0, (), generator=g))  # a ReLU folded into the requant's bounds
    rq = _random_requant(g, 5, rounding, lo=relu_lo)
    pool = ir.MaxPool(name="p", inputs=("x",), kernel=(3, 2), stride=(2, 2), padding=(1, 1, 1, 0))
    run_rq, run_pool = prepare_requant(rq, CPU, None), prepare_maxpool(pool, CPU, None)  # type: ignore[arg-type]
    want = _requant_int64(run_pool(x), rq)
    assert torch.equal(run_rq(run_pool(x)).long(), want)  # the generic kernel is the int64 reference
    assert torch.equal(run_pool(run_rq(x)).long(), want)  # requant first: the same integers
    relu = prepare_clamp(ir.Clamp(name="r", inputs=("x",), lo=_t(0), hi=_t(2**31 - 1)), CPU, None)  # type: ignore[arg-type]
    assert torch.equal(run_pool(relu(x)), relu(run_pool(x)))
    assert torch.equal(run_rq(relu(x)).long(), _requant_int64(relu(x), rq))
    assert torch.equal(relu(run_rq(x).to(I32)), run_rq(x).to(I32).clamp(min=0))


def test_a_decreasing_requant_does_not_commute_and_is_not_moved() -> None:
    x = torch.tensor([[[[-5, 7]]]], dtype=I32)
    rq = ir.Requant(name="y", inputs=("p",), zp_in=_t(0), multiplier=_t(-1), shift=_t(0), zp_out=_t(0),
                    lo=_t(-128), hi=_t(127))
    pool = ir.MaxPool(name="p", inputs=("x",), kernel=(1, 2), stride=(1, 2))
    run_rq, run_pool = prepare_requant(rq, CPU, None), prepare_maxpool(pool, CPU, None)  # type: ignore[arg-type]
    assert run_rq(run_pool(x)).item() == -7 and run_pool(run_rq(x)).item() == 5  # why m >= 0 is required
    assert [op.name for _, op in commute_requants([pool, rq], set())] == ["p", "y"]


def _conv(g: torch.Generator, cin: int, cout: int, name: str, inp: str) -> ir.Conv:
    return ir.Conv(name=name, inputs=(inp,), weight=torch.randint(-128, 128, (cout, cin, 3, 3), generator=g,
                   dtype=torch.int8), bias=torch.randint(-999, 999, (cout,), generator=g, dtype=I32),
                   padding=(1, 1, 1, 1), input_zp=3)


@pytest.mark.parametrize("gemm", ["int32", "numba", "int_mm_fused"])
def test_programs_with_requant_moved_before_pool_and_flatten(gemm: str) -> None:
    g = torch.Generator().manual_seed(0)
    conv1 = _conv(g, 4, 6, "c1", "x")
    pool = ir.MaxPool(name="pool", inputs=("c1",), kernel=(2, 2), stride=(2, 2))
    rq1 = _random_requant(g, 6, "half_up", min_m=1)
    rq1 = dataclasses.replace(rq1, name="q1", inputs=("pool",))
    conv2 = _conv(g, 6, 5, "c2", "q1")
    flat = ir.Reshape(name="flat", inputs=("c2",), shape=(5 * 4 * 4,))
    per_ch = torch.randint(1, 2**20, (5,), generator=g, dtype=I32)
    rq2 = ir.Requant(name="q2", inputs=("flat",), zp_in=_t(0), multiplier=per_ch.repeat_interleave(16),
                     shift=_t(24), zp_out=_t(-3), lo=_t(-128), hi=_t(127))  # a per-channel scale, flattened
    ops = [conv1, pool, rq1, conv2, flat, rq2]
    moved = [op.name for _, op in commute_requants(ops, set())]
    assert moved == ["c1", "q1/before", "q1", "c2", "q2/before", "q2"]
    assert [op.name for _, op in commute_requants(ops, {"pool", "flat"})] == [op.name for op in ops]  # kept: no move
    x = torch.randint(-128, 128, (7, 4, 8, 8), generator=g, dtype=torch.int8)
    env = {"x": x}
    for op in ops:  # the int64 reference of each op, in program order
        if isinstance(op, ir.Conv):
            xp = torch.nn.functional.pad(env[op.inputs[0]].long() - 3, (1, 1, 1, 1))
            env[op.name] = torch.nn.functional.conv2d(xp.double(), op.weight.double()).round().long() + op.bias.long().view(1, -1, 1, 1)
        elif isinstance(op, ir.Requant):
            env[op.name] = _requant_int64(env[op.inputs[0]], op)
        elif isinstance(op, ir.MaxPool):
            env[op.name] = torch.nn.functional.max_pool2d(env[op.inputs[0]].double(), 2, 2).long()
        else:
            env[op.name] = env[op.inputs[0]].reshape(7, -1)
    for keep in (set(), {"pool", "flat"}):
        steps = plan_steps(ops, CPU, gemm, keep, "q2")
        assert sorted(i for s in steps for i in s.ops) == list(range(len(ops)))  # each op once
        vals = {"x": x}
        for s in steps:
            vals[s.output] = s.kernel(*(vals[n] for n in s.inputs))
        assert torch.equal(vals["q2"].long(), env["q2"]) and vals["q2"].dtype == torch.int8


@NUMBA
@pytest.mark.parametrize("seed", range(6))
def test_numba_max_pool_matches_the_generic_kernel(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    pads = (int(rng.integers(0, kw)), int(rng.integers(0, kw)), int(rng.integers(0, kh)), int(rng.integers(0, kh)))
    op = ir.MaxPool(name="p", inputs=("x",), kernel=(kh, kw), stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                    padding=pads, dilation=(1, 1) if any(pads) else (int(rng.integers(1, 3)), 1))
    for dtype in (torch.int8, I32):
        x = torch.randint(-128, 128, (3, 7, 9, 8), generator=g, dtype=torch.int32).to(dtype)
        want = prepare_maxpool(op, CPU, None)(x)  # type: ignore[arg-type]
        for xin in (x, x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)):  # NCHW and channels-last memory
            got = rowops_cpu.prep_maxpool(op)(xin)
            assert got.dtype == dtype and torch.equal(got, want)
    op1 = ir.MaxPool(name="p", inputs=("x",), kernel=(1, 3), stride=(1, 2), padding=(1, 1, 0, 0), spatial_dims=1)
    x1 = torch.randint(-128, 128, (2, 3, 11), generator=g, dtype=torch.int8)
    assert torch.equal(rowops_cpu.prep_maxpool(op1)(x1), prepare_maxpool(op1, CPU, None)(x1))  # type: ignore[arg-type]


def _add_case(seed: int) -> tuple[list[ir.Op | None], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = 6
    pre_a = _random_requant(g, c, "half_up", out_dtype="int32", lo=-(2**31), hi=2**31 - 1) if seed % 2 else None
    pre_b = _random_requant(g, c, "half_up", out_dtype="int32", lo=-(2**31), hi=2**31 - 1) if seed % 3 else None
    if seed % 4 == 0:
        post: ir.Op | None = ir.Clamp(name="c", inputs=("s",), lo=_t(0), hi=_t(2**31 - 1))
    else:
        post = _random_requant(g, c, "half_up", lo=int(torch.randint(-128, 0, (), generator=g)))
    a = _tied_int32(g, (4, c, 5, 3)) if pre_a is None or seed % 5 else torch.randint(-128, 128, (4, c, 5, 3),
                                                                                       generator=g).to(torch.int8)
    b = torch.randint(-128, 128, (4, c, 5, 3), generator=g).to(torch.int8) if pre_b is not None else _tied_int32(g, (4, c, 5, 3))
    return [pre_a, pre_b, post], a, b


@NUMBA
@pytest.mark.parametrize("seed", range(12))
def test_fused_add_group_matches_int64_reference(seed: int) -> None:
    (pre_a, pre_b, post), a, b = _add_case(seed)

    def ref(x: torch.Tensor, op: ir.Op | None) -> torch.Tensor:
        if op is None:
            return x.long()
        if isinstance(op, ir.Clamp):
            return x.long().clamp(int(op.lo), int(op.hi))
        return _requant_int64(x, op)  # type: ignore[arg-type]

    s = ref(a, pre_a) + ref(b, pre_b)
    s = (s + 2**31) % 2**32 - 2**31  # the int32 add wraps
    want = ref(s, post)
    apart = lambda x, y: torch.full_like(x, 99, dtype=I32)  # noqa: E731  (must not run on these layouts)
    kernel = rowops_cpu.prep_add_group((pre_a, pre_b), post, apart)  # type: ignore[arg-type]
    assert kernel is not None
    nhwc = lambda t: t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # noqa: E731
    got = kernel(nhwc(a), nhwc(b))
    assert torch.equal(got.long(), want)
    assert got.dtype == (torch.int8 if isinstance(post, ir.Requant) else I32)
    assert torch.equal(kernel(a[:, :, :1, :1].contiguous(), b[:, :, :1, :1].contiguous()).long(), want[:, :, :1, :1])
    assert bool((kernel(a, nhwc(b)) == 99).all())  # NCHW with channels last: the ops apart


@NUMBA
def test_rowops_machine_code_has_no_float_op() -> None:
    pool, add = _numba_rowops.kernel("maxpool", cache=False), _numba_rowops.kernel("add_requant", cache=False)
    x = np.array([[[[1, -3], [4, 2]]]], np.int8)  # (1, 2, 1, 2) NHWC... as (N, H, W, C) = (1, 1, 2, 2)
    out = np.empty((1, 1, 1, 2), np.int8)
    pool(x.reshape(1, 1, 2, 2), (1, 2, 1, 2, 1, 1, 0, 0), -128, out)
    assert out.reshape(-1).tolist() == [4, 2]
    ident = np.array([[1], [0], [0], [-(2**31)], [2**31 - 1]], np.int64)
    a, b, o = np.array([[2**31 - 1]], np.int32), np.array([[1]], np.int8), np.empty((1, 1), np.int32)
    add(a, b, ident, ident, ident, False, False, False, o)
    assert o.tolist() == [[-(2**31)]]  # int32 wrap
    for fn in (pool, add):
        for llvm, asm in zip(fn.inspect_llvm().values(), fn.inspect_asm().values()):
            assert float_llvm_ops(llvm[llvm.index("define"):]) == []
            assert float_instructions(asm) == []


@NUMBA
@pytest.mark.parametrize("name", ["small_cnn", "resnet_tiny", "mobilenet_tiny"])
def test_kernels_split_over_two_threads_give_the_same_integers(demo, monkeypatch, name: str) -> None:  # type: ignore[no-untyped-def]
    from mpsearch.core import BitPlan
    from mpsearch.demo import batches
    from mpsearch.execution import to_integer
    from mpsearch.execution.kernels import _parallel
    from mpsearch.quant import quantizable_layer_names, quantize

    model, splits = demo(name)
    q = quantize(model, BitPlan.uniform(quantizable_layer_names(model), 8, 8), batches(splits.train, 256))
    imodel = to_integer(q, splits.example_inputs(2))
    codes = imodel.quantize_input(splits.test.tensors[0][:300])
    want = imodel.to(gemm="int32").run(*codes)
    threads = torch.get_num_threads()
    monkeypatch.setattr(_parallel, "MIN_PART_ELEMENTS", 1)  # every kernel call split
    try:
        torch.set_num_threads(2)
        assert _parallel.parts(300, 10) == 2
        for gemm in ("numba", "int_mm_fused"):
            assert torch.equal(imodel.to(gemm=gemm).run(*codes), want)
        assert torch.equal(imodel.quantize_input(splits.test.tensors[0][:300])[0], codes[0])
    finally:
        torch.set_num_threads(threads)
        imodel.to(gemm="auto")
