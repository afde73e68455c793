"""ONNX for function and method calls: arithmetic, reshapes, activations, attention.

Each handler takes ``(ctx, node)`` and returns the ONNX value of the node's output. Static nodes
(sizes and functions of sizes) never reach a handler: the translator keeps their values.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx

from mpsearch.errors import UnsupportedModelError
from mpsearch.execution.export._context import Context
from mpsearch.execution.export.ops_modules import clip, gelu, silu

FnHandler = Callable[[Context, fx.Node], str]


def _arg(node: fx.Node, i: int, key: str, default: Any = None) -> Any:
    return node.args[i] if len(node.args) > i else node.kwargs.get(key, default)


def _t(ctx: Context, node: fx.Node, arg: Any) -> str:
    return ctx.tensor(arg, ctx.where(node))


def _binary(op: str) -> FnHandler:
    def handler(ctx: Context, node: fx.Node) -> str:
        if node.kwargs.get("alpha", 1) != 1:
            raise UnsupportedModelError(f"export_onnx: node {node.name!r} uses alpha != 1")
        a, b = _arg(node, 0, "input"), _arg(node, 1, "other")
        return ctx.g.add(op, [_t(ctx, node, a), _t(ctx, node, b)], ctx.where(node))
    return handler


def _axis(dim: int, rank: int) -> int:
    return dim + rank if dim < 0 else dim


def flatten_value(ctx: Context, node: fx.Node, x: str, start: int, end: int) -> str:
    """``torch.flatten(x, start, end)``: ONNX Flatten where ``end`` is the last dimension, else Reshape."""
    src = node.args[0]
    rank = ctx.rank(src)
    start, end = _axis(start, rank), _axis(end, rank)
    if end == rank - 1 and start == 1:
        return ctx.g.add("Flatten", [x], ctx.where(node), axis=1)
    shape = ctx.shape(node)
    return _reshape_to(ctx, node, x, list(shape), [i == 0 and start > 0 for i in range(len(shape))])


def _reshape_to(ctx: Context, node: fx.Node, x: str, target: list[int], batch: list[bool]) -> str:
    """Reshape to ``target``, with every entry that follows the batch size made free: ``0`` (copy
    the input's dimension) at position 0 when the input's first dimension is the batch, else ``-1``."""
    src = node.args[0]
    src_batch = isinstance(src, fx.Node) and ctx.values[src].shape[0] != ctx.values_b[src].shape[0]
    out = list(target)
    for i, follows in enumerate(batch):
        if not follows:
            continue
        if i == 0 and src_batch:
            out[i] = 0
        elif -1 not in out:
            out[i] = -1
        else:
            raise UnsupportedModelError(f"export_onnx: reshape {node.name!r} to {target} has more than one "
                                        "dimension that follows the batch size")
    return ctx.g.add("Reshape", [x, ctx.g.const(np.asarray(out, np.int64), ctx.where(node))], ctx.where(node))


def reshape(ctx: Context, node: fx.Node) -> str:
    args = list(node.args[1:]) or [node.kwargs.get("shape")]
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = list(args[0])
    if any(isinstance(a, fx.Node) and isinstance(ctx.values[a], (tuple, list, torch.Size)) for a in args):
        # a whole size object: x.view(y.shape)
        sizes = list(ctx.static_value(args[0]))
        sizes_b = list(ctx.values_b[args[0]])
        return _reshape_to(ctx, node, _t(ctx, node, node.args[0]), sizes, [a != b for a, b in zip(sizes, sizes_b)])
    target = [int(ctx.static_value(a)) for a in args]
    return _reshape_to(ctx, node, _t(ctx, node, node.args[0]), target, [ctx.follows_batch(a) for a in args])


def transpose(ctx: Context, node: fx.Node) -> str:
    rank = ctx.rank(node.args[0])
    d0, d1 = (_axis(int(ctx.static_value(a)), rank) for a in node.args[1:3])
    perm = list(range(rank))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return ctx.g.add("Transpose", [_t(ctx, node, node.args[0])], ctx.where(node), perm=perm)


def permute(ctx: Context, node: fx.Node) -> str:
    dims = node.args[1:] if len(node.args) > 2 or not isinstance(node.args[1], (tuple, list)) else node.args[1]
    rank = ctx.rank(node.args[0])
    perm = [_axis(int(ctx.static_value(d)), rank) for d in dims]
    return ctx.g.add("Transpose", [_t(ctx, node, node.args[0])], ctx.where(node), perm=perm)


def flatten_fn(ctx: Context, node: fx.Node) -> str:
    return flatten_value(ctx, node, _t(ctx, node, node.args[0]), int(_arg(node, 1, "start_dim", 0)),
                         int(_arg(node, 2, "end_dim", -1)))


def passthrough(ctx: Context, node: fx.Node) -> str:
    return _t(ctx, node, node.args[0])


def cat(ctx: Context, node: fx.Node) -> str:
    tensors = _arg(node, 0, "tensors")
    dim = _axis(int(_arg(node, 1, "dim", 0)), ctx.rank(node))
    return ctx.g.add("Concat", [_t(ctx, node, t) for t in tensors], ctx.where(node), axis=dim)


def softmax_fn(ctx: Context, node: fx.Node) -> str:
    return ctx.g.add("Softmax", [_t(ctx, node, node.args[0])], ctx.where(node), axis=int(_arg(node, 1, "dim", -1)))


def sdpa(ctx: Context, node: fx.Node) -> str:
    """``softmax(q k^T * scale + mask) v`` in float (opset 13 ops), the causal mask a constant."""
    where = ctx.where(node)
    q, k, v = (_arg(node, i, n) for i, n in enumerate(("query", "key", "value")))
    mask = _arg(node, 3, "attn_mask")
    if float(_arg(node, 4, "dropout_p", 0.0) or 0.0) != 0.0 or node.kwargs.get("enable_gqa"):
        raise UnsupportedModelError(f"export_onnx: attention {node.name!r} with dropout or GQA is not exported")
    is_causal = bool(_arg(node, 5, "is_causal", False))
    d = ctx.shape(q)[-1]
    scale = _arg(node, 6, "scale") or 1.0 / math.sqrt(d)
    rank = ctx.rank(k)
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    kt = ctx.g.add("Transpose", [_t(ctx, node, k)], where, perm=perm)
    scores = ctx.g.add("Mul", [ctx.g.add("MatMul", [_t(ctx, node, q), kt], where),
                               ctx.g.const(np.float32(scale), where)], where)
    t, s = ctx.shape(q)[-2], ctx.shape(k)[-2]
    if is_causal:
        causal = np.where(np.tril(np.ones((t, s), dtype=bool)), 0.0, -np.inf).astype(np.float32)
        scores = ctx.g.add("Add", [scores, ctx.g.const(causal, where + ".causal_mask")], where)
    if mask is not None:
        m = ctx.values[mask] if isinstance(mask, fx.Node) else mask
        if isinstance(m, torch.Tensor) and m.dtype == torch.bool:
            additive = torch.where(m, 0.0, float("-inf")).float()
            if isinstance(mask, fx.Node) and mask in ctx.names:
                raise UnsupportedModelError(f"export_onnx: attention {node.name!r} has a boolean mask computed "
                                            "from the inputs")
            scores = ctx.g.add("Add", [scores, ctx.g.const(additive.numpy(), where + ".mask")], where)
        else:
            scores = ctx.g.add("Add", [scores, _t(ctx, node, mask)], where)
    probs = ctx.g.add("Softmax", [scores], where, axis=-1)
    return ctx.g.add("MatMul", [probs, _t(ctx, node, v)], where)


def _gelu_fn(ctx: Context, node: fx.Node) -> str:
    return gelu(ctx, node, None, _t(ctx, node, node.args[0]), node.kwargs.get("approximate", "none"))


def _unary(op: str) -> FnHandler:
    return lambda ctx, node: ctx.g.add(op, [_t(ctx, node, node.args[0])], ctx.where(node))


FUNCTION_HANDLERS: dict[Any, FnHandler] = {
    operator.add: _binary("Add"), torch.add: _binary("Add"),
    operator.sub: _binary("Sub"), torch.sub: _binary("Sub"),
    operator.mul: _binary("Mul"), torch.mul: _binary("Mul"),
    operator.truediv: _binary("Div"), torch.div: _binary("Div"),
    operator.matmul: _binary("MatMul"), torch.matmul: _binary("MatMul"),
    torch.flatten: flatten_fn, torch.cat: cat, torch.transpose: transpose, torch.permute: permute,
    torch.reshape: reshape,
    F.relu: _unary("Relu"), torch.relu: _unary("Relu"), torch.sigmoid: _unary("Sigmoid"),
    torch.tanh: _unary("Tanh"), F.gelu: _gelu_fn,
    F.silu: lambda ctx, node: silu(ctx, node, None, _t(ctx, node, node.args[0])),
    F.relu6: lambda ctx, node: clip(ctx, node, 0.0, 6.0, _t(ctx, node, node.args[0])),
    F.softmax: softmax_fn, torch.softmax: softmax_fn,
    F.scaled_dot_product_attention: sdpa,
    F.dropout: passthrough,
}

METHOD_HANDLERS: dict[str, FnHandler] = {
    "view": reshape, "reshape": reshape, "transpose": transpose, "permute": permute,
    "contiguous": passthrough, "flatten": flatten_fn, "float": passthrough,
    "add": _binary("Add"), "mul": _binary("Mul"), "sub": _binary("Sub"), "div": _binary("Div"),
    "relu": _unary("Relu"), "sigmoid": _unary("Sigmoid"), "tanh": _unary("Tanh"), "softmax": softmax_fn,
}
