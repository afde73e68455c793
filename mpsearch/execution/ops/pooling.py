"""Handlers of pooling and mean: max pooling on codes, sums over windows rescaled exactly."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from mpsearch.execution import ir
from mpsearch.execution.ops._base import Context, Handler, call_args, pair, sample_shape, unsupported
from mpsearch.execution.ops._builder import INT32_MAX, Rep, compact, is_scalar
from mpsearch.execution.ops.islands import is_float_or_static, island


def _spatial_constant(rep: Rep, n_spatial: int) -> bool:
    """Scale, zero point and bounds do not vary over the last ``n_spatial`` sample axes."""
    for a in (rep.scale, rep.zp, rep.lo, rep.hi):
        arr = np.asarray(a)
        if arr.ndim and any(d != 1 for d in arr.shape[-n_spatial:]):
            return False
    return True


def _pool_params(node: fx.Node, ctx: Context, m: nn.Module | None, fn: Callable[..., Any] | None) -> dict[str, Any]:
    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    if m is not None:
        return {k: getattr(m, k) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                           "return_indices", "count_include_pad", "divisor_override",
                                           "output_size") if hasattr(m, k)}
    return call_args(node, fn, names)  # type: ignore[arg-type]


def _spatial_params(p: dict[str, Any], dims: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, ...]]:
    def norm(v: Any, default: Any) -> tuple[int, int]:
        v = default if v is None or (isinstance(v, (tuple, list)) and not v) else v
        if dims == 1:
            return (1, int(v[0] if isinstance(v, (tuple, list)) else v))
        return pair(v)

    k = norm(p["kernel_size"], None)
    s = norm(p.get("stride"), p["kernel_size"])
    pd = norm(p.get("padding", 0), 0)
    return k, s, (pd[1], pd[1], pd[0], pd[0])


def maxpool(ctx: Context, node: fx.Node, m: nn.Module | None = None) -> Rep:
    dims = 1 if isinstance(m, nn.MaxPool1d) or node.target is F.max_pool1d else 2
    p = _pool_params(node, ctx, m, None if m is not None else node.target)
    if p.get("ceil_mode") or p.get("return_indices"):
        raise unsupported(node, ctx, "max pooling with ceil_mode or return_indices is not supported")
    x = ctx.rep(node.args[0], node)
    if not _spatial_constant(x, dims):
        raise unsupported(node, ctx, "max pooling of a tensor whose scale varies over space")
    k, s, pad = _spatial_params(p, dims)
    d = (1, int(p.get("dilation", 1) if not isinstance(p.get("dilation"), (tuple, list)) else p["dilation"][0])) \
        if dims == 1 else pair(p.get("dilation", 1))
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.MaxPool(name=name, inputs=(x.value,), source=node.name, kernel=k, stride=s, padding=pad,
                          dilation=d, spatial_dims=dims))
    return x.replace(value=name, shape=sample_shape(node))  # max commutes with the affine map and the clamp


def _fit_for_sum(ctx: Context, node: fx.Node, x: Rep, n_summed: int) -> Rep:
    """Rescale ``x`` (int32) to a coarser scale, by powers of two, until a sum of ``n_summed`` fits int32."""
    worst = max(np.max(np.abs(np.minimum(x.lo, x.zp))), np.max(np.abs(np.maximum(x.hi, x.zp)))) * n_summed
    if worst <= INT32_MAX:
        return x
    factor = 2.0 ** math.ceil(math.log2(worst / INT32_MAX))
    return ctx.b.requant(x, x.scale * factor, np.int64(0), -(2**31), INT32_MAX, "int32", node.name)


def _sum_rep(ctx: Context, node: fx.Node, x: Rep, n_summed: int, divisor: int, name: str) -> Rep:
    """Rep of a window sum of ``n_summed`` codes that stands for their sum / ``divisor``."""
    lo, hi = np.minimum(x.lo, x.zp) * n_summed, np.maximum(x.hi, x.zp) * n_summed
    if max(np.max(np.abs(lo)), np.max(np.abs(hi))) > INT32_MAX:
        raise unsupported(node, ctx, "the int32 sum of the pooling window could overflow")
    return Rep(value=name, dtype="int32", shape=sample_shape(node), scale=x.scale / divisor, zp=x.zp * n_summed,
               lo=lo, hi=hi)


def avgpool(ctx: Context, node: fx.Node, m: nn.Module | None = None) -> Rep:
    adaptive = isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)) or node.target in (
        F.adaptive_avg_pool1d, F.adaptive_avg_pool2d)
    dims = 1 if isinstance(m, (nn.AvgPool1d, nn.AdaptiveAvgPool1d)) or node.target in (
        F.avg_pool1d, F.adaptive_avg_pool1d) else 2
    x = ctx.b.materialize(ctx.rep(node.args[0], node), node.name)
    in_hw = x.shape[-dims:]
    out_hw = sample_shape(node)[-dims:]
    if adaptive:
        if any(i % o for i, o in zip(in_hw, out_hw)):
            raise unsupported(node, ctx, f"adaptive average pooling from {tuple(in_hw)} to {tuple(out_hw)} has "
                                          "windows of different sizes; only exact divisions are supported")
        kk = tuple(i // o for i, o in zip(in_hw, out_hw))
        k = (1, kk[0]) if dims == 1 else (kk[0], kk[1])
        s, pad, divisor_override, include_pad = k, (0, 0, 0, 0), None, True
    else:
        p = _pool_params(node, ctx, m, None if m is not None else node.target)
        if p.get("ceil_mode"):
            raise unsupported(node, ctx, "average pooling with ceil_mode is not supported")
        k, s, pad = _spatial_params(p, dims)
        divisor_override, include_pad = p.get("divisor_override"), p.get("count_include_pad", True)
        if any(pad) and not include_pad:
            raise unsupported(node, ctx, "average pooling with padding and count_include_pad=False is not supported")
    if any(pad) and not is_scalar(x.zp):
        x = ctx.b.requant(x, x.scale, np.int64(0), -(2**31), INT32_MAX, "int32", node.name)
    n = k[0] * k[1]
    x = _fit_for_sum(ctx, node, x, n)
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.AvgPoolSum(name=name, inputs=(x.value,), source=node.name, kernel=k, stride=s, padding=pad,
                             pad_value=int(x.zp) if is_scalar(x.zp) else 0, spatial_dims=dims))
    return _sum_rep(ctx, node, x, n, int(divisor_override or n), name)


def mean(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    if is_float_or_static(ctx, node.args[0]):  # a float island's value (RMSNorm's mean of squares)
        return island(ctx, node, "mean", tuple(node.args), dict(node.kwargs))
    x = ctx.b.materialize(ctx.rep(node.args[0], node), node.name)
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))
    if dims is None:
        raise unsupported(node, ctx, "a mean over every dimension (batch included) is not supported")
    dims = tuple(sorted(d + x.ndim + 1 if d < 0 else d for d in ((dims,) if isinstance(dims, int) else dims)))
    if 0 in dims:
        raise unsupported(node, ctx, "a mean over the batch dimension is not supported")
    for a in (x.scale, x.zp):
        arr = np.asarray(a)
        if arr.ndim and any(arr.shape[d - 1] != 1 for d in dims):
            raise unsupported(node, ctx, "a mean over an axis along which the scale varies")
    n = int(np.prod([x.shape[d - 1] for d in dims]))
    x = _fit_for_sum(ctx, node, x, n)
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.SumReduce(name=name, inputs=(x.value,), source=node.name, dims=dims, keepdim=keepdim))
    rep = _sum_rep(ctx, node, x, n, n, name)
    nd = len(rep.shape)
    squeeze = (lambda a: np.asarray(a) if np.asarray(a).ndim == 0 or keepdim
               else np.asarray(a).squeeze(tuple(d - 1 for d in dims)))
    return rep.replace(scale=compact(squeeze(rep.scale), nd), zp=compact(squeeze(rep.zp), nd),
                       lo=compact(squeeze(rep.lo), nd), hi=compact(squeeze(rep.hi), nd))


MODULES: tuple[tuple[type[nn.Module], Handler], ...] = (
    (nn.MaxPool1d, maxpool),
    (nn.MaxPool2d, maxpool),
    (nn.AvgPool1d, avgpool),
    (nn.AvgPool2d, avgpool),
    (nn.AdaptiveAvgPool1d, avgpool),
    (nn.AdaptiveAvgPool2d, avgpool),
)
FUNCTIONS: dict[Any, Handler] = {
    F.max_pool1d: maxpool, F.max_pool2d: maxpool, F.avg_pool1d: avgpool, F.avg_pool2d: avgpool,
    F.adaptive_avg_pool1d: avgpool, F.adaptive_avg_pool2d: avgpool, torch.mean: mean,
}
METHODS: dict[str, Handler] = {"mean": mean}
