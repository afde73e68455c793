"""Handlers of shape-only ops: identities (dropout, ``contiguous``), reshapes and flattens (the
integers move, their scales move with them), and ``x.size()`` / ``x.shape`` / ``x.dim()``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from mpsearch.execution import ir
from mpsearch.execution.ops._base import Context, Handler, sample_shape
from mpsearch.execution.ops._builder import Rep, compact, full


def identity(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    return ctx.rep(node.args[0], node)


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


MODULES: tuple[tuple[type[nn.Module], Handler], ...] = (
    (nn.Identity, identity),
    (nn.Dropout, identity),
    (nn.Flatten, reshape),
)
FUNCTIONS: dict[Any, Handler] = {torch.flatten: reshape, torch.reshape: reshape, F.dropout: identity,
                                 getattr: shape_value}
METHODS: dict[str, Handler] = {"flatten": reshape, "view": reshape, "reshape": reshape, "size": shape_value,
                               "dim": shape_value, "contiguous": contiguous}
