"""Handlers of shape-only ops: identities (dropout, ``contiguous``), reshapes and flattens (the
integers move, their scales move with them), data moves (transpose, permute, slicing, split,
chunk, squeeze, ...: one ``shape_op``, the scales moved by the same function), and
``x.size()`` / ``x.shape`` / ``x.dim()``."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from mpsearch.execution import ir
from mpsearch.execution.ops._base import Context, Handler, sample_shape, unsupported
from mpsearch.execution.ops._builder import Rep, compact, full
from mpsearch.execution.kernels.islands import SHAPE_FNS


def identity(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    return ctx.rep(node.args[0], node)


def reshape(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    src = node.args[0]
    raw = ctx.reps.get(src) if isinstance(src, fx.Node) else None
    if isinstance(raw, Rep) and raw.dtype in ("float", "index") and same_sample_shape(node, src):
        return raw  # ``input_ids.view(-1, T)`` of a model input (indices): the input itself
    x = ctx.rep(node.args[0], node)
    shape = sample_shape(node)
    if shape == x.shape:
        return x

    def move(a: np.ndarray) -> np.ndarray:
        return compact(full(a, x.shape).reshape(shape), len(shape))

    name = ctx.b.name(node.name)
    ctx.b.emit(ir.Reshape(name=name, inputs=(x.value,), source=node.name, shape=shape))
    return x.replace(value=name, shape=shape, scale=move(x.scale), zp=move(x.zp), lo=move(x.lo), hi=move(x.hi))


def same_sample_shape(node: fx.Node, src: fx.Node) -> bool:
    """Whether ``node`` keeps the per-example shape of ``src`` (a reshape that moves nothing)."""
    a, b = node.meta.get("tensor_meta"), src.meta.get("tensor_meta")
    return a is not None and b is not None and tuple(a.shape) == tuple(b.shape)


def shape_value(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    """``x.size()``, ``x.shape``, ``x.dim()``: Python values, read statically by reshapes."""
    return Rep(value="", dtype="shape", shape=(), scale=np.float64(1), zp=np.int64(0), lo=np.int64(0),
               hi=np.int64(0))


def contiguous(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    return ctx.rep(node.args[0], node)


def _moved(fn: str, call: object, x: Rep, attr: str, select: int | None) -> np.ndarray | None:
    """``attr`` of ``x`` (scale, zp, lo, hi) moved by the same data move, batch dim 1 added."""
    a = torch.from_numpy(full(np.asarray(getattr(x, attr), dtype=np.float64), x.shape)[None].copy())
    args, kwargs = ir.decode(call, (a,), ())
    y = SHAPE_FNS[fn](*args, **kwargs)
    y = y[select] if select is not None else y
    if y.dim() == 0 or y.shape[0] != 1:
        return None
    return y[0].numpy()


def _move_rep(ctx: Context, node: fx.Node, fn: str, x: Rep, call: object, select: int | None,
              shape: tuple[int, ...]) -> Rep:
    moved = {a: _moved(fn, call, x, a, select) for a in ("scale", "zp", "lo", "hi")}
    if any(v is None or tuple(v.shape) != shape for v in moved.values()):
        raise unsupported(node, ctx, "a data move across the batch dimension is not supported")
    name = ctx.b.name(node.name if select is None else f"{node.name}_{select}")
    ctx.b.emit(ir.ShapeOp(name=name, inputs=(x.value,), source=node.name, fn=fn, call=call, select=select))
    nd = len(shape)
    return x.replace(value=name, shape=shape, scale=compact(moved["scale"], nd),
                     zp=compact(moved["zp"].astype(np.int64), nd), lo=compact(moved["lo"].astype(np.int64), nd),
                     hi=compact(moved["hi"].astype(np.int64), nd))


def _call_template(ctx: Context, node: fx.Node) -> object:
    """``(args, kwargs)`` of ``node`` as plain data: its first argument the input, fx nodes
    after it replaced by their static values (sizes)."""
    def sub(v: object) -> object:
        if isinstance(v, fx.Node):
            if v not in ctx.static:
                raise unsupported(node, ctx, f"argument {v.name!r} must be a size known when the program is built")
            s = ctx.static[v]
            return tuple(s) if isinstance(s, torch.Size) else s
        if isinstance(v, (tuple, list)):
            return type(v)(sub(e) for e in v)
        if isinstance(v, slice):
            return slice(sub(v.start), sub(v.stop), sub(v.step))
        return v

    marker = object()
    args = (marker, *sub(tuple(node.args[1:])))  # type: ignore[misc]
    kwargs = {k: sub(v) for k, v in node.kwargs.items()}
    return ir.encode((args, kwargs), {id(marker): 0}, {})


def data_move(fn: str) -> Handler:
    """A handler for the data move ``fn`` (a name of ``SHAPE_FNS``) of an integer or float value."""
    def handler(ctx: Context, node: fx.Node, *_: object) -> object:
        src = node.args[0]
        if fn == "getitem" and isinstance(src, fx.Node) and isinstance(ctx.reps.get(src), tuple):
            return ctx.reps[src][node.args[1]]  # one tensor of a split / chunk
        x = ctx.rep(src, node)
        call = _call_template(ctx, node)
        out = node.meta.get("tensor_meta")
        if fn in ("split", "chunk", "unbind"):
            n = len(_moved_count(fn, call, x))
            return tuple(_move_rep(ctx, node, fn, x, call, i, _piece_shape(fn, call, x, i)) for i in range(n))
        return _move_rep(ctx, node, fn, x, call, None, tuple(out.shape[1:]) if out is not None else x.shape)
    handler.__name__ = f"move_{fn}"
    return handler


def _moved_count(fn: str, call: object, x: Rep) -> tuple[object, ...]:
    a = torch.zeros((1, *x.shape))
    args, kwargs = ir.decode(call, (a,), ())
    return tuple(SHAPE_FNS[fn](*args, **kwargs))


def _piece_shape(fn: str, call: object, x: Rep, i: int) -> tuple[int, ...]:
    return tuple(_moved_count(fn, call, x)[i].shape[1:])  # type: ignore[attr-defined]


MODULES: tuple[tuple[type[nn.Module], Handler], ...] = (
    (nn.Identity, identity),
    (nn.Dropout, identity),
    (nn.Flatten, reshape),
)
_MOVES = ("transpose", "permute", "split", "chunk", "unbind", "squeeze", "unsqueeze", "unflatten", "t", "movedim")
FUNCTIONS: dict[Any, Handler] = {torch.flatten: reshape, torch.reshape: reshape, F.dropout: identity,
                                 getattr: shape_value, operator.getitem: data_move("getitem"),
                                 **{getattr(torch, f): data_move(f) for f in _MOVES}}
METHODS: dict[str, Handler] = {"flatten": reshape, "view": reshape, "reshape": reshape, "size": shape_value,
                               "dim": shape_value, "contiguous": contiguous, **{f: data_move(f) for f in _MOVES}}
