"""One converter per fx op of a fake-quant graph: each reads the :class:`Rep` of its inputs,
emits integer ops and returns the :class:`Rep` of its output.

The registries at the bottom decide what is supported; an op missing from them is refused by
:func:`mpsearch.execution.convert.to_integer` before anything runs.
"""

from __future__ import annotations

import inspect
import math
import operator
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from mpsearch.errors import UnsupportedModelError
from mpsearch.execution import ir
from mpsearch.execution._builder import INT32_MAX, Builder, Rep, compact, full, int_tensor, is_scalar
from mpsearch.quant.modules import ActQuant, QuantConv1d, QuantConv2d, QuantLinear
from mpsearch.quant.quantizer import quantize as quantize_codes

#: Largest left shift of the products that makes room for the bias's extra precision.
MAX_BIAS_SHIFT = 16
#: The bias shift stops where the accumulator bound reaches 2^26, leaving 32x of int32 room for
#: the sums that may follow (residual adds, pooling windows).
ACC_HEADROOM_MAX = 2**26


class Context:
    """State of one conversion: the builder, node -> Rep, the fx module and what it found."""

    def __init__(self, gm: fx.GraphModule, builder: Builder) -> None:
        self.gm = gm
        self.b = builder
        self.reps: dict[fx.Node, Any] = {}
        self.inputs: list[ir.InputQuant] = []
        self.taps: dict[str, str] = {}  # ActQuant module path -> value name of its codes
        self.layers: dict[str, str] = {}  # quantized layer name -> value name of its accumulator
        self.output: ir.OutputSpec | None = None

    def rep(self, arg: Any, node: fx.Node) -> Rep:
        if not isinstance(arg, fx.Node):
            raise UnsupportedModelError(f"to_integer: node {node.name!r} ({describe(node, self.gm)}) takes a "
                                        f"constant {arg!r} where a tensor is expected; not supported")
        rep = self.reps[arg]
        if rep.dtype == "float":
            raise UnsupportedModelError(f"to_integer: node {node.name!r} ({describe(node, self.gm)}) reads the "
                                        f"model input {arg.name!r} before it is quantized; every use of a float "
                                        "input must go through an activation quantizer")
        return rep


def describe(node: fx.Node, gm: fx.GraphModule) -> str:
    """``"module conv1 (Conv2d)"`` / ``"function add"`` / ``"method view"`` for messages."""
    if node.op == "call_module":
        return f"module {node.target} ({type(gm.get_submodule(str(node.target))).__name__})"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__name__', str(node.target))}"
    if node.op == "call_method":
        return f"method {node.target}"
    return f"{node.op} {node.target}"


def _unsupported(node: fx.Node, ctx: Context, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"to_integer: node {node.name!r} ({describe(node, ctx.gm)}): {why}")


def _sample_shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    return tuple(int(d) for d in meta.shape[1:])


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _call_args(node: fx.Node, fn: Callable[..., Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Arguments of a call_function / call_method node by parameter name (defaults filled)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
        bound = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        for p, v in zip(params, node.args):
            bound[p.name] = v
    except (TypeError, ValueError):  # builtins without a signature: positional order of ``names``
        bound = dict(zip(names, node.args))
    bound.update(node.kwargs)
    return bound


# -- quantizers and layers ---------------------------------------------------------------
def _act_scale(aq: ActQuant, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    scale = aq.scale.detach().cpu().double().numpy()
    zp = aq.zero_point.detach().cpu().long().numpy()
    if aq.spec.granularity == "per_channel":
        shape = [1] * ndim
        shape[aq.spec.axis - 1] = -1  # the sample drops the batch axis
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return compact(scale, ndim), compact(zp, ndim)


def act_quant(ctx: Context, node: fx.Node, aq: ActQuant) -> Rep:
    spec = aq.spec
    if aq.mode != "quantize":
        raise _unsupported(node, ctx, f"activation quantizer is in mode {aq.mode!r}; the integer executor needs "
                                      "frozen static ranges (mode 'quantize', i.e. calibrated)")
    shape = _sample_shape(node)
    scale, zp = _act_scale(aq, len(shape))
    offset = 128 if spec.qmax > 127 else 0  # unsigned 8-bit codes are stored shifted into int8
    zp = zp - offset
    qmin, qmax = spec.qmin - offset, spec.qmax - offset
    src = node.args[0]
    source = f"{node.name} ({node.target})"
    if isinstance(src, fx.Node) and ctx.reps[src].dtype == "float":
        if not is_scalar(scale):
            raise _unsupported(node, ctx, "a per-channel quantizer on the model input is not supported")
        name = ctx.b.name(node.name)
        ctx.inputs.append(ir.InputQuant(name=name, source=source, scale=float(aq.scale.reshape(-1)[0]),
                                        zero_point=int(zp), qmin=qmin, qmax=qmax, bits=spec.bits,
                                        sample_shape=shape))
        rep = Rep(value=name, dtype="int8", shape=shape, scale=scale, zp=zp, lo=np.int64(qmin),
                  hi=np.int64(qmax), bits=spec.bits)
    else:
        rep = ctx.b.requant(ctx.rep(src, node), scale, zp, qmin, qmax, "int8", source, bits=spec.bits,
                            base=node.name)
    ctx.taps[str(node.target)] = rep.value
    return rep


def _weight_codes(node: fx.Node, ctx: Context, m: nn.Module) -> tuple[torch.Tensor, np.ndarray]:
    wq = m.weight_quant
    spec = wq.spec
    if spec.granularity not in ("per_tensor", "per_channel") or (spec.granularity == "per_channel" and spec.axis):
        raise _unsupported(node, ctx, f"weight granularity {spec.granularity} (axis {spec.axis}) is not supported; "
                                      "use per_channel (output channels) or per_tensor")
    if bool((wq.zero_point != 0).any()):
        raise _unsupported(node, ctx, "asymmetric weights (non-zero weight zero point) are not supported; "
                                      "use symmetric weights")
    if spec.bits > 8:
        raise _unsupported(node, ctx, f"weights of {spec.bits} bits do not fit int8")
    codes = quantize_codes(m.weight.detach().float().cpu(), wq.scale.cpu(), wq.zero_point.cpu(), spec)
    scale = wq.scale.detach().cpu().double().numpy().reshape(-1)
    return codes.to(torch.int8), scale


def _layer_input(ctx: Context, node: fx.Node) -> Rep:
    x = ctx.rep(node.args[0] if node.args else node.kwargs.get("input"), node)
    if x.dtype != "int8" or x.clamp is not None or not is_scalar(x.scale) or not is_scalar(x.zp):
        raise _unsupported(node, ctx, "the input of a quantized layer must be per-tensor quantized activation "
                                      "codes (an activation quantizer right before it)")
    return x


def _accumulator(ctx: Context, node: fx.Node, m: nn.Module, x: Rep, codes: torch.Tensor, w_scale: np.ndarray,
                 shape: tuple[int, ...], channel_axis: int) -> tuple[Rep, torch.Tensor, int]:
    """Rep of an int32 accumulator, its int32 bias at scale S_w * S_a / 2^k, and k."""
    cout = codes.shape[0]
    view = [1] * len(shape)
    view[channel_axis] = cout
    s_acc = (float(x.scale) * np.broadcast_to(w_scale, (cout,))).reshape(view)  # float64, exact product
    bias = np.zeros(cout) if m.bias is None else m.bias.detach().double().cpu().numpy()
    # |sum w (x - zp)| and |sum w x| (the kernel's intermediate before the zero-point correction)
    x_abs = max(int(np.max(x.max_abs())), int(np.max(np.abs(x.lo))), int(np.max(np.abs(x.hi))))
    products = np.abs(codes.long().numpy()).reshape(cout, -1).sum(1) * x_abs
    # The bias is an int32 at scale S_w * S_a / 2^k, the products are shifted left by k: a bias
    # rounded to S_w * S_a alone is off by up to half of it, which at 4-bit weights is a visible
    # fraction of the next quantizer's step. k is the largest (<= MAX_BIAS_SHIFT) that fits int32.
    k = MAX_BIAS_SHIFT
    while True:
        bias_q = np.rint(bias * 2.0**k / s_acc.reshape(-1)).astype(np.int64)
        bound = products * 2**k + np.abs(bias_q)
        if bound.max() <= ACC_HEADROOM_MAX or k == 0:
            break
        k -= 1
    if bound.max() > INT32_MAX:
        raise _unsupported(node, ctx, f"the int32 accumulator could overflow (bound {int(bound.max())})")
    b = bound.reshape(view)
    rep = Rep(value=ctx.b.name(node.name), dtype="int32", shape=shape, scale=compact(s_acc / 2.0**k, len(shape)),
              zp=np.int64(0), lo=compact(-b, len(shape)), hi=compact(b, len(shape)))
    return rep, int_tensor(bias_q), k


def _conv_padding(m: nn.Module, k: tuple[int, ...]) -> tuple[int, ...]:
    """(left, right, top, bottom) zero padding of a conv module (2-d order; 1-d has no top/bottom)."""
    pad = m.padding
    nd = len(k)
    if isinstance(pad, str):
        if pad == "valid":
            pads = [(0, 0)] * nd
        else:  # "same" (stride 1): total d*(k-1), the extra one on the right as torch does
            pads = [(m.dilation[i] * (k[i] - 1) // 2, m.dilation[i] * (k[i] - 1) - m.dilation[i] * (k[i] - 1) // 2)
                    for i in range(nd)]
    else:
        pads = [(int(p), int(p)) for p in pad]
    if nd == 1:
        return (pads[0][0], pads[0][1], 0, 0)
    return (pads[1][0], pads[1][1], pads[0][0], pads[0][1])


def quant_conv(ctx: Context, node: fx.Node, m: nn.Module) -> Rep:
    if m.padding_mode != "zeros":
        raise _unsupported(node, ctx, f"padding_mode {m.padding_mode!r} is not supported (only 'zeros')")
    x = _layer_input(ctx, node)
    codes, w_scale = _weight_codes(node, ctx, m)
    dims = 1 if isinstance(m, QuantConv1d) else 2
    shape = _sample_shape(node)
    rep, bias, k = _accumulator(ctx, node, m, x, codes, w_scale, shape, 0)
    ks = tuple(m.kernel_size)
    ctx.b.emit(ir.Conv(name=rep.value, inputs=(x.value,), source=f"{node.name} ({node.target})",
                       weight=codes.reshape(codes.shape[0], codes.shape[1], 1, ks[0]) if dims == 1 else codes,
                       bias=bias, bias_shift=k, stride=(1, m.stride[0]) if dims == 1 else _pair(m.stride),
                       padding=_conv_padding(m, ks), dilation=(1, m.dilation[0]) if dims == 1 else _pair(m.dilation),
                       groups=int(m.groups), input_zp=int(x.zp), spatial_dims=dims, w_bits=int(m.w_bits),
                       a_bits=int(x.bits or m.a_bits)))
    ctx.layers[str(node.target)] = rep.value
    return rep


def quant_linear(ctx: Context, node: fx.Node, m: nn.Module) -> Rep:
    x = _layer_input(ctx, node)
    codes, w_scale = _weight_codes(node, ctx, m)
    shape = _sample_shape(node)
    rep, bias, k = _accumulator(ctx, node, m, x, codes, w_scale, shape, len(shape) - 1)
    ctx.b.emit(ir.Linear(name=rep.value, inputs=(x.value,), source=f"{node.name} ({node.target})", weight=codes,
                         bias=bias, bias_shift=k, input_zp=int(x.zp), w_bits=int(m.w_bits), a_bits=int(x.bits or m.a_bits)))
    ctx.layers[str(node.target)] = rep.value
    return rep


# -- elementwise -------------------------------------------------------------------------
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
        raise _unsupported(node, ctx, "clamp bounds must be numbers")
    return _with_clamp(ctx, node, -math.inf if lo is None else float(lo), math.inf if hi is None else float(hi))


def add(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    if len(node.args) != 2 or node.kwargs.get("alpha", 1) != 1:
        raise _unsupported(node, ctx, "only a + b of two tensors is supported")
    a, b = ctx.rep(node.args[0], node), ctx.rep(node.args[1], node)
    source = node.name
    a, b = ctx.b.common_scale([a, b], source)
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.Add(name=name, inputs=(a.value, b.value), source=source))
    return Rep(value=name, dtype="int32", shape=_sample_shape(node), scale=a.scale, zp=np.int64(0),
               lo=np.int64(np.min(a.lo) + np.min(b.lo)), hi=np.int64(np.max(a.hi) + np.max(b.hi)))


def cat(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    tensors = node.args[0] if node.args else node.kwargs["tensors"]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    reps = [ctx.b.materialize(ctx.rep(t, node), node.name) for t in tensors]
    nd = reps[0].ndim
    dim = dim + nd + 1 if dim < 0 else dim
    if dim == 0:
        raise _unsupported(node, ctx, "concatenation along the batch dimension is not supported")
    shape = _sample_shape(node)

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


# -- pooling and shapes ------------------------------------------------------------------
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
    return _call_args(node, fn, names)  # type: ignore[arg-type]


def _spatial_params(p: dict[str, Any], dims: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, ...]]:
    def norm(v: Any, default: Any) -> tuple[int, int]:
        v = default if v is None or (isinstance(v, (tuple, list)) and not v) else v
        if dims == 1:
            return (1, int(v[0] if isinstance(v, (tuple, list)) else v))
        return _pair(v)

    k = norm(p["kernel_size"], None)
    s = norm(p.get("stride"), p["kernel_size"])
    pd = norm(p.get("padding", 0), 0)
    return k, s, (pd[1], pd[1], pd[0], pd[0])


def maxpool(ctx: Context, node: fx.Node, m: nn.Module | None = None) -> Rep:
    dims = 1 if isinstance(m, nn.MaxPool1d) or node.target is F.max_pool1d else 2
    p = _pool_params(node, ctx, m, None if m is not None else node.target)
    if p.get("ceil_mode") or p.get("return_indices"):
        raise _unsupported(node, ctx, "max pooling with ceil_mode or return_indices is not supported")
    x = ctx.rep(node.args[0], node)
    if not _spatial_constant(x, dims):
        raise _unsupported(node, ctx, "max pooling of a tensor whose scale varies over space")
    k, s, pad = _spatial_params(p, dims)
    d = (1, int(p.get("dilation", 1) if not isinstance(p.get("dilation"), (tuple, list)) else p["dilation"][0])) \
        if dims == 1 else _pair(p.get("dilation", 1))
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.MaxPool(name=name, inputs=(x.value,), source=node.name, kernel=k, stride=s, padding=pad,
                          dilation=d, spatial_dims=dims))
    return x.replace(value=name, shape=_sample_shape(node))  # max commutes with the affine map and the clamp


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
        raise _unsupported(node, ctx, "the int32 sum of the pooling window could overflow")
    return Rep(value=name, dtype="int32", shape=_sample_shape(node), scale=x.scale / divisor, zp=x.zp * n_summed,
               lo=lo, hi=hi)


def avgpool(ctx: Context, node: fx.Node, m: nn.Module | None = None) -> Rep:
    adaptive = isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)) or node.target in (
        F.adaptive_avg_pool1d, F.adaptive_avg_pool2d)
    dims = 1 if isinstance(m, (nn.AvgPool1d, nn.AdaptiveAvgPool1d)) or node.target in (
        F.avg_pool1d, F.adaptive_avg_pool1d) else 2
    x = ctx.b.materialize(ctx.rep(node.args[0], node), node.name)
    in_hw = x.shape[-dims:]
    out_hw = _sample_shape(node)[-dims:]
    if adaptive:
        if any(i % o for i, o in zip(in_hw, out_hw)):
            raise _unsupported(node, ctx, f"adaptive average pooling from {tuple(in_hw)} to {tuple(out_hw)} has "
                                          "windows of different sizes; only exact divisions are supported")
        kk = tuple(i // o for i, o in zip(in_hw, out_hw))
        k = (1, kk[0]) if dims == 1 else (kk[0], kk[1])
        s, pad, divisor_override, include_pad = k, (0, 0, 0, 0), None, True
    else:
        p = _pool_params(node, ctx, m, None if m is not None else node.target)
        if p.get("ceil_mode"):
            raise _unsupported(node, ctx, "average pooling with ceil_mode is not supported")
        k, s, pad = _spatial_params(p, dims)
        divisor_override, include_pad = p.get("divisor_override"), p.get("count_include_pad", True)
        if any(pad) and not include_pad:
            raise _unsupported(node, ctx, "average pooling with padding and count_include_pad=False is not supported")
    if any(pad) and not is_scalar(x.zp):
        x = ctx.b.requant(x, x.scale, np.int64(0), -(2**31), INT32_MAX, "int32", node.name)
    n = k[0] * k[1]
    x = _fit_for_sum(ctx, node, x, n)
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.AvgPoolSum(name=name, inputs=(x.value,), source=node.name, kernel=k, stride=s, padding=pad,
                             pad_value=int(x.zp) if is_scalar(x.zp) else 0, spatial_dims=dims))
    return _sum_rep(ctx, node, x, n, int(divisor_override or n), name)


def mean(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    x = ctx.b.materialize(ctx.rep(node.args[0], node), node.name)
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))
    if dims is None:
        raise _unsupported(node, ctx, "a mean over every dimension (batch included) is not supported")
    dims = tuple(sorted(d + x.ndim + 1 if d < 0 else d for d in ((dims,) if isinstance(dims, int) else dims)))
    if 0 in dims:
        raise _unsupported(node, ctx, "a mean over the batch dimension is not supported")
    for a in (x.scale, x.zp):
        arr = np.asarray(a)
        if arr.ndim and any(arr.shape[d - 1] != 1 for d in dims):
            raise _unsupported(node, ctx, "a mean over an axis along which the scale varies")
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


def reshape(ctx: Context, node: fx.Node, *_: Any) -> Rep:
    x = ctx.rep(node.args[0], node)
    shape = _sample_shape(node)
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


Handler = Callable[..., Rep]

#: module types (first isinstance match wins) -> converter(ctx, node, module).
MODULE_HANDLERS: tuple[tuple[type[nn.Module], Handler], ...] = (
    (ActQuant, act_quant),
    (QuantConv2d, quant_conv),
    (QuantConv1d, quant_conv),
    (QuantLinear, quant_linear),
    (nn.Identity, identity),
    (nn.Dropout, identity),
    (nn.ReLU, relu),
    (nn.Hardtanh, hardtanh_module),  # ReLU6 is a Hardtanh(0, 6)
    (nn.MaxPool1d, maxpool),
    (nn.MaxPool2d, maxpool),
    (nn.AvgPool1d, avgpool),
    (nn.AvgPool2d, avgpool),
    (nn.AdaptiveAvgPool1d, avgpool),
    (nn.AdaptiveAvgPool2d, avgpool),
    (nn.Flatten, reshape),
)

#: functions (call_function targets) -> converter(ctx, node).
FUNCTION_HANDLERS: dict[Any, Handler] = {
    operator.add: add, operator.iadd: add, torch.add: add,
    torch.cat: cat, torch.concat: cat,
    torch.relu: relu, F.relu: relu, F.relu6: relu6, F.hardtanh: clamp_fn, torch.clamp: clamp_fn,
    F.max_pool1d: maxpool, F.max_pool2d: maxpool,
    F.avg_pool1d: avgpool, F.avg_pool2d: avgpool, F.adaptive_avg_pool1d: avgpool, F.adaptive_avg_pool2d: avgpool,
    torch.mean: mean, torch.flatten: reshape, torch.reshape: reshape,
    F.dropout: identity, getattr: shape_value,
}

#: tensor methods (call_method names) -> converter(ctx, node).
METHOD_HANDLERS: dict[str, Handler] = {
    "relu": relu, "add": add, "clamp": clamp_fn, "mean": mean, "flatten": reshape, "view": reshape,
    "reshape": reshape, "size": shape_value, "dim": shape_value, "contiguous": contiguous,
}
