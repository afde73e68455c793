"""Integer attention (integer-only mode): ``F.scaled_dot_product_attention`` and the
``sdpa_attention`` of :class:`~mpsearch.model.attention.PackedAttention` as integer ops.

q, k and v (int32 accumulators in the simulation, which keeps them float) are rescaled to int8
codes of their range on the example inputs; ``scores = q @ k^T`` (``act_matmul``, int32) with the
``1/sqrt(d)`` folded into its scale; I-BERT's integer softmax with the mask as zeros; the weights
rescaled to 8-bit codes ``[0, 255]`` at scale 1/255; ``out = weights @ v`` (``act_matmul``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import fx

from mpsearch.execution import ir
from mpsearch.execution.ops import integer_versions as iv
from mpsearch.execution.ops._base import Context, unsupported
from mpsearch.execution.ops._builder import Rep
from mpsearch.execution.ops.shape import _move_rep


def _move(ctx: Context, node: fx.Node, x: Rep, fn: str, args: tuple[Any, ...], shape: tuple[int, ...]) -> Rep:
    marker = object()
    call = ir.encode(((marker, *args), {}), {id(marker): 0}, {})
    return _move_rep(ctx, node, fn, x, call, None, shape)


def _core(ctx: Context, node: fx.Node, q: Rep, k: Rep, v: Rep, mask: torch.Tensor | None, scale: float | None) -> Rep:
    """Integer attention of int8 codes ``q, k, v`` of shape ``(..., T, d)``; ``mask`` True = masked."""
    *lead, t_q, d = q.shape
    t_k = k.shape[-2]
    kt = _move(ctx, node, k, "transpose", (-2, -1), (*k.shape[:-2], d, t_k))
    scores = _matmul(ctx, node, q, kt, (*lead, t_q, t_k))
    scores = scores.replace(scale=scores.scale * (1.0 / math.sqrt(d) if scale is None else float(scale)))
    weights = iv.softmax(ctx, node, scores, -1, mask=mask, shape=(*lead, t_q, t_k))
    codes = ctx.b.requant(weights, np.float64(1.0 / 255.0), np.int64(0), 0, 255, "int32", node.name)
    return _matmul(ctx, node, codes, v, (*lead, t_q, v.shape[-1]))


def _matmul(ctx: Context, node: fx.Node, a: Rep, b: Rep, shape: tuple[int, ...]) -> Rep:
    name = ctx.b.name(f"{node.name}_mm")
    ctx.b.emit(ir.ActMatmul(name=name, inputs=(a.value, b.value), source=node.name, a_zp=int(a.zp), b_zp=int(b.zp)))
    bound = int(a.shape[-1] * np.max(a.max_abs()) * np.max(b.max_abs()))
    if bound >= 2**31:
        raise unsupported(node, ctx, f"the int32 attention product could overflow (bound {bound})")
    return Rep(value=name, dtype="int32", shape=shape, scale=np.float64(float(a.scale) * float(b.scale)),
               zp=np.int64(0), lo=np.int64(-bound), hi=np.int64(bound))


def _codes(ctx: Context, node: fx.Node, arg: Any) -> Rep:
    return iv._codes(ctx, node, arg, ctx.rep(arg, node))


def sdpa(ctx: Context, node: fx.Node) -> Rep:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale)``."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    a = dict(zip(names, node.args)) | dict(node.kwargs)
    q, k, v = (_codes(ctx, node, a[n]) for n in names[:3])
    mask = a.get("attn_mask")
    if isinstance(mask, fx.Node):
        m = ctx.static.get(mask)
        if not isinstance(m, torch.Tensor):
            raise unsupported(node, ctx, "an integer attention mask must be a constant (a buffer)")
        mask = ~m if m.dtype == torch.bool else torch.isneginf(m)  # SDPA: True = attend; float: -inf = masked
    if a.get("is_causal"):
        causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).triu(1)
        mask = causal if mask is None else mask | causal
    return _core(ctx, node, q, k, v, mask, a.get("scale"))


def packed_sdpa(ctx: Context, node: fx.Node) -> Rep:
    """``sdpa_attention(q, k, v, num_heads, batch_first, attn_mask, key_padding_mask, is_causal, ...)``."""
    names = ("q", "k", "v", "num_heads", "batch_first", "attn_mask", "key_padding_mask", "is_causal")
    a = dict(zip(names, node.args)) | dict(node.kwargs)
    if a.get("key_padding_mask") is not None or not a.get("batch_first", False):
        raise unsupported(node, ctx, "integer attention supports batch_first without key_padding_mask")
    h = int(a["num_heads"])
    reps = []
    for n in names[:3]:
        x = _codes(ctx, node, a[n])
        t, e = x.shape
        x = _move(ctx, node, x, "unflatten", (-1, (h, e // h)), (t, h, e // h))
        reps.append(_move(ctx, node, x, "transpose", (-3, -2), (h, t, e // h)))
    mask = a.get("attn_mask")
    if isinstance(mask, fx.Node):
        m = ctx.static.get(mask)
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
            raise unsupported(node, ctx, "an integer attention mask must be a constant bool buffer")
        mask = m  # torch MHA: True = may not attend
    if a.get("is_causal"):
        causal = torch.ones(reps[0].shape[-2], reps[1].shape[-2], dtype=torch.bool).triu(1)
        mask = causal if mask is None else mask | causal
    out = _core(ctx, node, *reps, mask, None)
    h_, t, dh = out.shape
    out = _move(ctx, node, out, "transpose", (-3, -2), (t, h_, dh))
    return _move(ctx, node, out, "flatten", (-2,), (t, h_ * dh))
