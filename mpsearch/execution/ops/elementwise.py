"""Handlers of elementwise ops: ReLU, ReLU6 and clamps (pending real clamps, folded into the next
rescale), residual adds (both inputs at a common scale) and concatenation."""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from mpsearch.execution import ir
from mpsearch.execution.ops._base import Context, Handler, sample_shape, unsupported
from mpsearch.execution.ops._builder import Rep, compact, full
from mpsearch.execution.ops.integer_versions import add_const
from mpsearch.execution.ops.islands import is_float_or_static, island


def _with_clamp(ctx: Context, node: fx.Node, lo: float, hi: float) -> Rep:
    if is_float_or_static(ctx, node.args[0]):  # a float island's value: clamp it in float
        return island(ctx, node, "clamp", (node.args[0],),
                      {"min": None if math.isinf(lo) else lo, "max": None if math.isinf(hi) else hi})
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
    if any(is_float_or_static(ctx, a) for a in node.args):  # a float value or a constant (a Parameter)
        const = [a for a in node.args if isinstance(a, fx.Node) and a in ctx.static]
        values = [a for a in node.args if isinstance(a, fx.Node) and a not in ctx.static]
        if ctx.integer_only and len(const) == 1 and len(values) == 1 and isinstance(ctx.static[const[0]], torch.Tensor):
            return add_const(ctx, node, ctx.rep(values[0], node), ctx.static[const[0]])
        return island(ctx, node, "add", tuple(node.args), {})
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


MODULES: tuple[tuple[type[nn.Module], Handler], ...] = (
    (nn.ReLU, relu),
    (nn.Hardtanh, hardtanh_module),  # ReLU6 is a Hardtanh(0, 6)
)
FUNCTIONS: dict[Any, Handler] = {
    operator.add: add, operator.iadd: add, torch.add: add, torch.cat: cat, torch.concat: cat,
    torch.relu: relu, F.relu: relu, F.relu6: relu6, F.hardtanh: clamp_fn, torch.clamp: clamp_fn,
}
METHODS: dict[str, Handler] = {"relu": relu, "add": add, "clamp": clamp_fn}
