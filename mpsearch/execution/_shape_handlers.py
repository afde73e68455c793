"""Converters of elementwise ops (clamps, residual adds, concatenation) and of shape-only ops."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import fx, nn

from mpsearch.execution import ir
from mpsearch.execution._builder import Rep, compact, full
from mpsearch.execution._context import Context, sample_shape, unsupported


def identity(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    return ctx.rep(node.args[0], node)


def _with_clamp(ctx: Context, node: fx.Node, lo: float, hi: float) -> Rep:
    x = ctx.rep(node.args[0], node)
    old = x.clamp or (-math.inf, math.inf)
    return x.replace(clamp=(max(old[0], lo), min(old[1], hi)))


def relu(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    return _with_clamp(ctx, node, 0.0, math.inf)


def hardtanh_module(ctx: Context, node: fx.Node, m: nn.Hardtanh) -> Rep:
    return _with_clamp(ctx, node, float(m.min_val), float(m.max_val))


def relu6(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    return _with_clamp(ctx, node, 0.0, 6.0)


def clamp_fn(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    args = list(node.args[1:]) + [None, None]
    lo = node.kwargs.get("min", node.kwargs.get("min_val", args[0]))
    hi = node.kwargs.get("max", node.kwargs.get("max_val", args[1]))
    if node.target is F.hardtanh:
        lo = -1.0 if lo is None else lo
        hi = 1.0 if hi is None else hi
    if not all(v is None or isinstance(v, (int, float)) for v in (lo, hi)):
        raise unsupported(node, ctx, "clamp bounds must be numbers")
    return _with_clamp(ctx, node, -math.inf if lo is None else float(lo), math.inf if hi is None else float(hi))


def add(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    if len(node.args) != 2 or node.kwargs.get("alpha", 1) != 1:
        raise unsupported(node, ctx, "only a + b of two tensors is supported")
    a, b = ctx.rep(node.args[0], node), ctx.rep(node.args[1], node)
    source = node.name
    a, b = ctx.b.common_scale([a, b], source)
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.Add(name=name, inputs=(a.value, b.value), source=source))
    return Rep(value=name, dtype="int32", shape=sample_shape(node), scale=a.scale, zp=np.int64(0),
               lo=np.int64(np.min(a.lo) + np.min(b.lo)), hi=np.int64(np.max(a.hi) + np.max(b.hi)))


def cat(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    tensors = node.args[0] if node.args else node.kwargs["tensors"]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    reps = [ctx.b.materialize(ctx.rep(t, node), node.name) for t in tensors]
    nd = reps[0].ndim
    dim = dim + nd + 1 if dim < 0 else dim
    if dim == 0:
        raise unsupported(node, ctx, "concatenation along the batch dimension is not supported")
    shape = sample_shape(node)

    def joined(attr: str) -> np.ndarray:
        return compact(np.concatenate([full(getattr(r, attr), r.shape) for r in reps], axis=dim - 1), nd)

    out_dtype = "int8" if all(r.dtype == "int8" for r in reps) else "int32"
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.Cat(name=name, inputs=tuple(r.value for r in reps), source=node.name, dim=dim,
                      out_dtype=out_dtype))
    bits = {r.bits for r in reps}
    return Rep(value=name, dtype=out_dtype, shape=shape, scale=joined("scale").astype(np.float64),
               zp=joined("zp").astype(np.int64), lo=joined("lo").astype(np.int64), hi=joined("hi").astype(np.int64),
               bits=bits.pop() if len(bits) == 1 else None)



def reshape(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    x = ctx.rep(node.args[0], node)
    shape = sample_shape(node)
    if shape == x.shape:
        return x

    def move(a: np.ndarray) -> np.ndarray:
        return compact(full(a, x.shape).reshape(shape), len(shape))

    name = ctx.b.name(node.name)
    ctx.b.emit(ir.Reshape(name=name, inputs=(x.value,), source=node.name, shape=shape))
    return x.replace(value=name, shape=shape, scale=move(x.scale), zp=move(x.zp), lo=move(x.lo), hi=move(x.hi))


def shape_value(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    """``x.size()``, ``x.shape``, ``x.dim()``: Python values, read statically by reshapes."""
    return Rep(value="", dtype="shape", shape=(), scale=np.float64(1), zp=np.int64(0), lo=np.int64(0),
               hi=np.int64(0))


def contiguous(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    return ctx.rep(node.args[0], node)
