"""Handlers of the quantizers and the quantized layers: activation codes, conv and linear
accumulators (int32), with the bias folded in at the accumulator's scale."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import fx, nn

from mpsearch.execution import ir
from mpsearch.execution.ops._base import Context, Handler, pair, sample_shape, unsupported
from mpsearch.execution.ops._builder import INT32_MAX, Rep, compact, int_tensor, is_scalar
from mpsearch.execution.ops.islands import quantize_float
from mpsearch.execution.ops.per_token import is_per_token, per_token_act_quant, per_token_linear, reads_per_token
from mpsearch.execution.ops.weight_only import is_weight_only, weight_only_linear
from mpsearch.quant.modules import ActQuant, QuantConv1d, QuantConv2d, QuantLinear
from mpsearch.quant.quantizer import quantize as quantize_codes


#: Largest left shift of the products that makes room for the bias's extra precision.
MAX_BIAS_SHIFT = 16
#: The bias shift stops where the accumulator bound reaches 2^26, leaving 32x of int32 room for
#: the sums that may follow (residual adds, pooling windows).
ACC_HEADROOM_MAX = 2**26


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
    if is_per_token(aq):  # its rows are quantized by the layer that reads it (ops.per_token)
        return per_token_act_quant(ctx, node, aq)
    if aq.mode != "quantize":
        raise unsupported(node, ctx, f"activation quantizer is in mode {aq.mode!r}; the integer executor needs "
                                      "frozen static ranges (mode 'quantize', i.e. calibrated)")
    shape = sample_shape(node)
    scale, zp = _act_scale(aq, len(shape))
    offset = 128 if spec.qmax > 127 else 0  # unsigned 8-bit codes are stored shifted into int8
    zp = zp - offset
    qmin, qmax = spec.qmin - offset, spec.qmax - offset
    src = node.args[0]
    source = f"{node.name} ({node.target})"
    if isinstance(src, fx.Node) and getattr(ctx.reps.get(src), "dtype", None) == "float32":
        # the value of a float island: rounded as the simulation's quantizer rounds it
        rep = quantize_float(ctx, node, ctx.reps[src], scale, zp, qmin, qmax, spec.bits, source)
    elif isinstance(src, fx.Node) and ctx.reps[src].dtype == "float":
        if not is_scalar(scale):
            raise unsupported(node, ctx, "a per-channel quantizer on the model input is not supported")
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
        raise unsupported(node, ctx, f"weight granularity {spec.granularity} (axis {spec.axis}) is not supported; "
                                      "use per_channel (output channels) or per_tensor")
    if bool((wq.zero_point != 0).any()):
        raise unsupported(node, ctx, "asymmetric weights (non-zero weight zero point) are not supported; "
                                      "use symmetric weights")
    if spec.bits > 8:
        raise unsupported(node, ctx, f"weights of {spec.bits} bits do not fit int8")
    codes = quantize_codes(m.weight.detach().float().cpu(), wq.scale.cpu(), wq.zero_point.cpu(), spec)
    scale = wq.scale.detach().cpu().double().numpy().reshape(-1)
    return codes.to(torch.int8), scale


def _layer_input(ctx: Context, node: fx.Node) -> Rep:
    x = ctx.rep(node.args[0] if node.args else node.kwargs.get("input"), node)
    if x.dtype != "int8" or x.clamp is not None or not is_scalar(x.scale) or not is_scalar(x.zp):
        raise unsupported(node, ctx, "the input of a quantized layer must be per-tensor quantized activation "
                                      "codes (an activation quantizer right before it)")
    return x


def round_bias(v: np.ndarray, to_odd: bool) -> np.ndarray:
    """``v`` rounded to integers (int64): to nearest (half to even), or, with ``to_odd``, to odd
    where it is not an integer already (the odd one of its two integer neighbours).

    Rounding to odd keeps a sticky bit: a sum of it and any even integers is odd, so it is never
    the midpoint of a grid of 2^s with s >= 2, and rounding the sum to that grid gives the single
    rounding of the exact sum (round-to-odd, Boldo & Melquiond 2008).
    """
    if not to_odd:
        return np.rint(v).astype(np.int64)
    lo = np.floor(v)
    return np.where((v != lo) & (np.mod(lo, 2) == 0), lo + 1, lo).astype(np.int64)


def _is_power_of_two(a: np.ndarray) -> bool:
    return bool(np.all(np.frexp(a)[0] == 0.5))  # positive values: mantissa exactly 1/2


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
    # With power-of-two scales every later rescale is a shift, so the bias grid lines up with the
    # next quantizer's grid: a bias rounded to nearest could land exactly on a midpoint of it where
    # the real sum lies just beside it, and the requant then rounded the wrong way (double
    # rounding: on resnet_tiny at W4A8, 0.12% of the codes after the first residual add, 6.6%
    # after the last quantizer, off by one from the exact codes). Rounded to odd (needs k >= 1, so
    # that the products are even), the requant gives the exact single rounding; other scales keep
    # rounding to nearest, where the grids do not line up.
    pow2 = _is_power_of_two(s_acc)
    k = MAX_BIAS_SHIFT
    while True:
        bias_q = round_bias(bias * 2.0**k / s_acc.reshape(-1), to_odd=pow2 and k > 0)
        bound = products * 2**k + np.abs(bias_q)
        if bound.max() <= ACC_HEADROOM_MAX or k == 0:
            break
        k -= 1
    if bound.max() > INT32_MAX:
        raise unsupported(node, ctx, f"the int32 accumulator could overflow (bound {int(bound.max())})")
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
        raise unsupported(node, ctx, f"padding_mode {m.padding_mode!r} is not supported (only 'zeros')")
    x = _layer_input(ctx, node)
    codes, w_scale = _weight_codes(node, ctx, m)
    dims = 1 if isinstance(m, QuantConv1d) else 2
    shape = sample_shape(node)
    rep, bias, k = _accumulator(ctx, node, m, x, codes, w_scale, shape, 0)
    ks = tuple(m.kernel_size)
    ctx.b.emit(ir.Conv(name=rep.value, inputs=(x.value,), source=f"{node.name} ({node.target})",
                       weight=codes.reshape(codes.shape[0], codes.shape[1], 1, ks[0]) if dims == 1 else codes,
                       bias=bias, bias_shift=k, stride=(1, m.stride[0]) if dims == 1 else pair(m.stride),
                       padding=_conv_padding(m, ks), dilation=(1, m.dilation[0]) if dims == 1 else pair(m.dilation),
                       groups=int(m.groups), input_zp=int(x.zp), spatial_dims=dims, w_bits=int(m.w_bits),
                       a_bits=int(x.bits or m.a_bits)))
    ctx.layers[str(node.target)] = rep.value
    return rep


def quant_linear(ctx: Context, node: fx.Node, m: nn.Module) -> Rep:
    if is_weight_only(m):
        return weight_only_linear(ctx, node, m)
    if reads_per_token(ctx, node):
        return per_token_linear(ctx, node, m)
    x = _layer_input(ctx, node)
    codes, w_scale = _weight_codes(node, ctx, m)
    shape = sample_shape(node)
    rep, bias, k = _accumulator(ctx, node, m, x, codes, w_scale, shape, len(shape) - 1)
    ctx.b.emit(ir.Linear(name=rep.value, inputs=(x.value,), source=f"{node.name} ({node.target})", weight=codes,
                         bias=bias, bias_shift=k, input_zp=int(x.zp), w_bits=int(m.w_bits), a_bits=int(x.bits or m.a_bits)))
    ctx.layers[str(node.target)] = rep.value
    return rep


MODULES: tuple[tuple[type[nn.Module], Handler], ...] = (
    (ActQuant, act_quant),
    (QuantConv2d, quant_conv),
    (QuantConv1d, quant_conv),
    (QuantLinear, quant_linear),
)
FUNCTIONS: dict[Any, Handler] = {}
METHODS: dict[str, Handler] = {}
