"""Integer versions of transformer ops, used in integer-only mode (``IntegerConfig(integer_only=True)``)
where the float-island handlers of :mod:`.islands` would otherwise be refused.

* embedding lookup: int8 rows, each rescaled from its own scale to one output scale (``embedding``);
* ``x + constant`` (a learned positional embedding): the constant rounded to an int32 ``const``
  at a fine scale, then an integer add;
* LayerNorm, GELU, SiLU, softmax: I-BERT's integer kernels (:mod:`mpsearch.execution.kernels.ibert`),
  their input first rescaled to the working scale each needs;
* ``a @ b`` and ``a * b`` of two int8 activations (``act_matmul``, ``act_mul``); ``x * c`` of a
  positive number only changes the scale.

They approximate the float ops (stated errors in tests/execution/test_integer_transformer_kernels.py),
so the default, float-island mode keeps the simulation's float ops instead.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from mpsearch.execution import ir
from mpsearch.execution.dyadic import dyadic
from mpsearch.execution.kernels.ibert import igelu_consts, isoftmax_consts, isilu_consts
from mpsearch.execution.ops._base import Context, sample_shape, unsupported
from mpsearch.execution.ops._builder import INT32_MAX, INT32_MIN, Rep, compact, int_tensor, is_scalar

#: bound of the rows of an integer embedding's output (scale: finest row scale / 2^k).
EMB_BOUND = 2**24
#: LayerNorm input bound: squares summed over the row, shifted by 16 bits, stay inside int64.
LN_INPUT_BITS = 20
LN_NORM_BITS = 8
GAMMA_BITS = 15
GELU_INPUT_STEP = 1.769 * math.sqrt(2.0) / 1024  # clip at 1024 steps: the erf polynomial's range
SOFTMAX_INPUT_STEP = math.log(2.0) / 256
SOFTMAX_OUT_BITS = 16
SILU_INPUT_STEP = math.log(2.0) / 256  # i-exp's working step, as softmax's
SILU_SIG_BITS = 15  # fractional bits of the integer sigmoid


def _rep(name: str, shape: tuple[int, ...], scale: float, bound: int) -> Rep:
    return Rep(value=name, dtype="int32", shape=shape, scale=np.float64(scale), zp=np.int64(0),
               lo=np.int64(-bound), hi=np.int64(bound))


def _to_scale(ctx: Context, x: Rep, scale: float, bound: int, source: str) -> Rep:
    """``x`` rescaled to one per-tensor ``scale`` (int32, zero point 0, clamped to +-bound)."""
    return ctx.b.requant(x, np.float64(scale), np.int64(0), -bound, bound, "int32", source)


def embedding(ctx: Context, node: fx.Node, src: fx.Node, codes: torch.Tensor, scale: torch.Tensor,
              zp: torch.Tensor) -> Rep:
    s_row = scale.double().numpy().reshape(-1)
    q_abs = (codes.long() - zp.long()).abs().amax(1).numpy()
    finest = float(s_row.min())
    widest = float(np.max(q_abs * s_row / finest))
    k = int(np.clip(math.floor(math.log2(EMB_BOUND / max(widest, 1.0))), 0, 16))
    s_out = finest / 2.0**k
    m, s = dyadic(s_row / s_out)
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.Embedding(name=name, inputs=(ctx.reps[src].value,), source=f"{node.name} ({node.target})",
                            codes=codes, zp=zp.to(torch.int32), multiplier=int_tensor(m.reshape(-1, 1)),
                            shift=int_tensor(s.reshape(-1, 1))))
    ctx.layers[str(node.target)] = name
    return _rep(name, sample_shape(node), s_out, int(math.ceil(widest * 2.0**k)) + 1)


def add_const(ctx: Context, node: fx.Node, x: Rep, const: torch.Tensor) -> Rep:
    """``x + const``: the constant as int32 at a scale fine enough that its rounding is far below
    ``x``'s step, then both at a common scale and added."""
    c = const.detach().double().cpu().numpy()
    c_abs = float(np.abs(c).max()) or 1.0
    s_c = min(float(np.min(x.scale)), c_abs / 2**20)
    q = np.rint(c / s_c).astype(np.int64)
    name = ctx.b.name(f"{node.name}_const")
    ctx.b.emit(ir.Const(name=name, inputs=(), source=node.name, value=int_tensor(q)))
    nd = len(c.shape)
    crep = Rep(value=name, dtype="int32", shape=tuple(c.shape), scale=np.float64(s_c), zp=np.int64(0),
               lo=compact(q.min(), nd), hi=compact(q.max(), nd))
    a, b = ctx.b.common_scale([x, crep], node.name)
    out = ctx.b.name(node.name)
    ctx.b.emit(ir.Add(name=out, inputs=(a.value, b.value), source=node.name))
    return Rep(value=out, dtype="int32", shape=sample_shape(node), scale=a.scale, zp=np.int64(0),
               lo=np.int64(np.min(a.lo) + np.min(b.lo)), hi=np.int64(np.max(a.hi) + np.max(b.hi)))


def layer_norm(ctx: Context, node: fx.Node, m: nn.LayerNorm, x: Rep) -> Rep:
    if len(m.normalized_shape) != 1:
        raise unsupported(node, ctx, "integer LayerNorm normalizes over the last dimension only")
    d = int(m.normalized_shape[0])
    source = f"{node.name} ({node.target})"
    bound_in = 2**LN_INPUT_BITS
    # the finest input step, coarsened only as far as the bound of the input needs
    s_in = max(float(np.max(x.scale * x.max_abs())) / bound_in, float(np.min(x.scale)))
    xin = _to_scale(ctx, x, s_in, bound_in, source)
    w = m.weight.detach().double().cpu().numpy() if m.weight is not None else np.ones(d)
    b = m.bias.detach().double().cpu().numpy() if m.bias is not None else np.zeros(d)
    s_g = (float(np.abs(w).max()) or 1.0) / 2**GAMMA_BITS
    s_out = s_g / 2**LN_NORM_BITS
    gamma, beta = np.rint(w / s_g).astype(np.int64), np.rint(b / s_out).astype(np.int64)
    eps_q = int(round(float(m.eps) / (s_in * s_in)))
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.ILayerNorm(name=name, inputs=(xin.value,), source=source, zp=0, eps_q=eps_q,
                             norm_bits=LN_NORM_BITS, gamma=int_tensor(gamma), beta=int_tensor(beta)))
    bound = int(math.sqrt(d) * 2**LN_NORM_BITS * int(np.abs(gamma).max()) + int(np.abs(beta).max())) + 1
    return _rep(name, sample_shape(node), s_out, bound)


def gelu(ctx: Context, node: fx.Node, x: Rep) -> Rep:
    source = f"{node.name} ({describe_target(node)})"
    xin = _to_scale(ctx, x, GELU_INPUT_STEP, 2**20, source)
    c = igelu_consts(GELU_INPUT_STEP)
    bound_in = min(int(np.max(x.max_abs() * x.scale / GELU_INPUT_STEP)) + 1, 2**20)
    bound = bound_in * 2 * int(c["q_c"])
    shift = max(0, bound.bit_length() - 30)
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.IGelu(name=name, inputs=(xin.value,), source=source, zp=0, q_b=int(c["q_b"]), q_c=int(c["q_c"]),
                        clip=int(c["clip"]), out_shift=shift))
    return _rep(name, sample_shape(node), float(c["out_scale"]) * 2.0**shift, (bound >> shift) + 1)


def silu(ctx: Context, node: fx.Node, x: Rep) -> Rep:
    """``x sigmoid(x)`` with the sigmoid from i-exp and an integer division; int32 at ``S 2^-15`` (shifted)."""
    source = f"{node.name} ({describe_target(node)})"
    xin = _to_scale(ctx, x, SILU_INPUT_STEP, 2**20, source)
    k = isilu_consts(SILU_INPUT_STEP)
    bound_in = min(int(np.max(x.max_abs() * x.scale / SILU_INPUT_STEP)) + 1, 2**20)
    bound = bound_in << SILU_SIG_BITS
    shift = max(0, bound.bit_length() - 30)
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.ISilu(name=name, inputs=(xin.value,), source=source, zp=0, sig_bits=SILU_SIG_BITS,
                        out_shift=shift, **k))
    return _rep(name, sample_shape(node), SILU_INPUT_STEP * 2.0 ** (shift - SILU_SIG_BITS), (bound >> shift) + 1)


def softmax(ctx: Context, node: fx.Node, x: Rep, dim: int, mask: torch.Tensor | None = None,
            shape: tuple[int, ...] | None = None) -> Rep:
    """I-BERT softmax of ``x`` along ``dim`` (``mask``: True -> weight 0); int32 at ``2^-16``."""
    source = f"{node.name} ({describe_target(node)})"
    xin = _to_scale(ctx, x, SOFTMAX_INPUT_STEP, 2**24, source)
    k = isoftmax_consts(SOFTMAX_INPUT_STEP)
    name = ctx.b.name(f"{node.name}_softmax" if mask is not None else node.name)
    ctx.b.emit(ir.ISoftmax(name=name, inputs=(xin.value,), source=source, dim=dim, out_bits=SOFTMAX_OUT_BITS,
                           mask=mask, **k))
    return Rep(value=name, dtype="int32", shape=shape or sample_shape(node), scale=np.float64(2.0**-SOFTMAX_OUT_BITS),
               zp=np.int64(0), lo=np.int64(0), hi=np.int64(2**SOFTMAX_OUT_BITS))


def _codes(ctx: Context, node: fx.Node, arg: Any, rep: Any) -> Rep:
    """``rep`` as per-tensor int8 codes: as it is when it is already, else rescaled to the symmetric
    8-bit grid of its range on the example inputs (the simulation has no quantizer there)."""
    if isinstance(rep, Rep) and rep.dtype == "int8" and rep.clamp is None and is_scalar(rep.scale) \
            and is_scalar(rep.zp):
        return rep
    amax = arg.meta.get("abs_max") if isinstance(arg, fx.Node) else None
    if not isinstance(rep, Rep) or rep.dtype not in ("int8", "int32") or amax is None:
        raise unsupported(node, ctx, "the integer product of two activations needs integer values with a range "
                                     "seen on the example inputs on both sides")
    scale = (amax or 1.0) / 127.0
    return ctx.b.requant(rep, np.float64(scale), np.int64(0), -127, 127, "int8", node.name, bits=8)


def product(ctx: Context, node: fx.Node, a_arg: fx.Node, b_arg: Any, matmul: bool) -> Rep:
    """``a @ b`` / ``a * b`` of int8 codes; ``a * c`` with a positive number ``c`` only scales."""
    a = ctx.rep(a_arg, node)
    if not matmul and isinstance(b_arg, (int, float)):
        if b_arg <= 0:
            raise unsupported(node, ctx, "integer x * c needs a positive number c")
        return a.replace(scale=a.scale * float(b_arg))
    a, b = _codes(ctx, node, a_arg, a), _codes(ctx, node, b_arg, ctx.rep(b_arg, node))
    kind = ir.ActMatmul if matmul else ir.ActMul
    name = ctx.b.name(node.name)
    ctx.b.emit(kind(name=name, inputs=(a.value, b.value), source=node.name, a_zp=int(a.zp), b_zp=int(b.zp)))
    shape = sample_shape(node)
    terms = a.shape[-1] if matmul else 1
    bound = int(terms * np.max(a.max_abs()) * np.max(b.max_abs()))
    if bound > INT32_MAX:
        raise unsupported(node, ctx, f"the int32 product could overflow (bound {bound})")
    return Rep(value=name, dtype="int32", shape=shape, scale=np.float64(float(a.scale) * float(b.scale)),
               zp=np.int64(0), lo=np.int64(max(-bound, INT32_MIN)), hi=np.int64(bound))


def describe_target(node: fx.Node) -> str:
    return str(getattr(node.target, "__name__", node.target))
