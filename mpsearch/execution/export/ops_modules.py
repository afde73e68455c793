"""ONNX for module calls: activation quantizers, quantized layers, and the float modules around them.

Each handler takes ``(ctx, node, module)`` and returns the ONNX value of the node's output.
LayerNorm, GELU, softmax and the other float modules stay float ONNX ops, as they are float in
the simulation. :data:`MODULE_HANDLERS` is searched in order by ``isinstance`` (quantized layers
before the float classes they subclass).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from torch import fx, nn

from mpsearch.errors import UnsupportedModelError
from mpsearch.execution.export._context import Context
from mpsearch.execution.export.qdq import act_qdq, weight_dq
from mpsearch.quant.modules import ActQuant, QuantConv1d, QuantConv2d, QuantEmbedding, QuantLinear

Handler = Callable[[Context, fx.Node, nn.Module], str]


def _in(ctx: Context, node: fx.Node, i: int = 0) -> str:
    return ctx.tensor(node.args[i], ctx.where(node))


def act_quant(ctx: Context, node: fx.Node, m: ActQuant) -> str:
    where = ctx.where(node)
    if m.mode == "off":
        return _in(ctx, node)
    if m.mode != "quantize" or m.spec.granularity == "per_token":
        raise UnsupportedModelError(
            f"export_onnx: activation quantizer {where!r} (node {node.name!r}) is in mode {m.mode!r} "
            f"({m.spec.granularity}); a QDQ pair needs a frozen static range: ONNX cannot express a range taken "
            "from each batch or token at run time (calibrate with activation_range='static', or a plan without "
            "per-token formats)")
    out, record = act_qdq(ctx.g, _in(ctx, node), m, where, ctx.opset, ctx.low_bits)
    ctx.records.append(record)
    if m.spec.granularity == "per_tensor" and m.spec.bits == 8:
        ctx.act_scales[out] = float(m.scale)
    return out


def _bias(ctx: Context, m: Any, x: str, where: str, w_scale: np.ndarray) -> str | None:
    """The bias: int32 codes at ``S_x * S_w[c]`` behind a DequantizeLinear where the input is a
    per-tensor 8-bit QDQ value and the weight 8-bit per-channel/per-tensor (the standard QDQ
    form, which lets ONNX Runtime fuse its 8-bit integer kernels), else float. Below 8 bits
    ``S_x * S_w`` is coarse: rounding the bias to it moved resnet_tiny's mixed plan to 95.8%
    top-1 agreement (float bias: 100%), and ONNX Runtime has no integer kernel there anyway."""
    if m.bias is None:
        return None
    b = m.bias.detach().cpu().double().numpy()
    if ctx.bias == "int32" and x in ctx.act_scales and m.w_bits == 8 and w_scale.ndim <= 1:
        scale = (ctx.act_scales[x] * w_scale.astype(np.float64)).astype(np.float32)
        scale = np.broadcast_to(scale, b.shape).copy() if scale.ndim else scale
        codes = np.clip(np.round(b / scale.astype(np.float64)), -2**31, 2**31 - 1).astype(np.int32)
        zp = np.zeros(scale.shape, dtype=np.int32)
        attrs = {"axis": 0} if scale.ndim else {}
        return ctx.g.add("DequantizeLinear", [ctx.g.const(codes, where + ".bias", "int32"),
                                              ctx.g.const(scale, where + ".bias_scale", "float32"),
                                              ctx.g.const(zp, where + ".bias_zero_point", "int32")], where, **attrs)
    return ctx.g.const(b.astype(np.float32), where + ".bias", "float32")


def quant_conv(ctx: Context, node: fx.Node, m: QuantConv1d | QuantConv2d) -> str:
    where = ctx.where(node)
    if m.padding_mode != "zeros":
        raise UnsupportedModelError(f"export_onnx: conv {where!r} has padding_mode {m.padding_mode!r}; only 'zeros'")
    x = _in(ctx, node)
    w, record, w_scale, _ = weight_dq(ctx.g, m, where, ctx.opset, ctx.low_bits)
    ctx.records.append(record)
    k = len(m.kernel_size)
    if isinstance(m.padding, str):
        if m.padding == "valid":
            pads = [0] * (2 * k)
        else:  # "same" (stride 1): total dilation * (k - 1), the extra element at the end as torch does
            total = [d * (s - 1) for d, s in zip(m.dilation, m.kernel_size)]
            pads = [t // 2 for t in total] + [t - t // 2 for t in total]
    else:
        pads = list(m.padding) * 2
    inputs = [x, w]
    bias = _bias(ctx, m, x, where, w_scale)
    if bias is not None:
        inputs.append(bias)
    return ctx.g.add("Conv", inputs, where, kernel_shape=list(m.kernel_size), strides=list(m.stride), pads=pads,
                     dilations=list(m.dilation), group=int(m.groups))


def quant_linear(ctx: Context, node: fx.Node, m: QuantLinear) -> str:
    """``x @ W^T + b`` as MatMul (+ Add): MatMul reads ``[.., in]`` inputs of any rank, and
    ONNX Runtime fuses a blocked int4 weight DequantizeLinear -> MatMul into MatMulNBits."""
    where = ctx.where(node)
    x = _in(ctx, node)
    w, record, w_scale, _ = weight_dq(ctx.g, m, where, ctx.opset, ctx.low_bits, transpose=True)
    ctx.records.append(record)
    y = ctx.g.add("MatMul", [x, w], where)
    bias = _bias(ctx, m, x, where, w_scale)
    return ctx.g.add("Add", [y, bias], where) if bias is not None else y


def quant_embedding(ctx: Context, node: fx.Node, m: QuantEmbedding) -> str:
    where = ctx.where(node)
    idx = ctx.tensor(node.args[0], where, like="int64")
    w, record, _, _ = weight_dq(ctx.g, m, where, ctx.opset, ctx.low_bits)
    ctx.records.append(record)
    return ctx.g.add("Gather", [w, idx], where, axis=0)


def float_linear(ctx: Context, node: fx.Node, m: nn.Linear) -> str:
    where = ctx.where(node)
    y = ctx.g.add("MatMul", [_in(ctx, node), ctx.g.const(m.weight.detach().cpu().numpy().T, where + ".weight")],
                  where)
    if m.bias is None:
        return y
    return ctx.g.add("Add", [y, ctx.g.const(m.bias.detach().cpu().numpy(), where + ".bias")], where)


def layer_norm(ctx: Context, node: fx.Node, m: nn.LayerNorm) -> str:
    where = ctx.where(node)
    shape = tuple(m.normalized_shape)
    w = m.weight.detach().cpu().numpy() if m.weight is not None else np.ones(shape, np.float32)
    inputs = [_in(ctx, node), ctx.g.const(w, where + ".weight")]
    if getattr(m, "bias", None) is not None:
        inputs.append(ctx.g.const(m.bias.detach().cpu().numpy(), where + ".bias"))
    return ctx.g.add("LayerNormalization", inputs, where, axis=-len(shape), epsilon=float(m.eps))


def gelu(ctx: Context, node: fx.Node, m: Any, x: str | None = None, approximate: str | None = None) -> str:
    where = ctx.where(node)
    x = _in(ctx, node) if x is None else x
    approximate = getattr(m, "approximate", "none") if approximate is None else approximate
    if ctx.opset >= 20:
        return ctx.g.add("Gelu", [x], where, approximate=approximate)
    if approximate != "none":
        raise UnsupportedModelError(f"export_onnx: GELU {where!r} with approximate={approximate!r} needs opset >= 20")
    # 0.5 x (1 + erf(x / sqrt 2))
    e = ctx.g.add("Erf", [ctx.g.add("Div", [x, ctx.g.const(np.float32(math.sqrt(2.0)), where)], where)], where)
    one_plus = ctx.g.add("Add", [e, ctx.g.const(np.float32(1.0), where)], where)
    return ctx.g.add("Mul", [ctx.g.add("Mul", [x, one_plus], where), ctx.g.const(np.float32(0.5), where)], where)


def silu(ctx: Context, node: fx.Node, m: Any, x: str | None = None) -> str:
    x = _in(ctx, node) if x is None else x
    return ctx.g.add("Mul", [x, ctx.g.add("Sigmoid", [x], ctx.where(node))], ctx.where(node))


def clip(ctx: Context, node: fx.Node, lo: float | None, hi: float | None, x: str | None = None) -> str:
    where = ctx.where(node)
    x = _in(ctx, node) if x is None else x
    bounds = [ctx.g.const(np.float32(v), where) if v is not None else "" for v in (lo, hi)]
    while bounds and bounds[-1] == "":
        bounds.pop()
    return ctx.g.add("Clip", [x, *bounds], where)


def _unary(op: str) -> Handler:
    return lambda ctx, node, m: ctx.g.add(op, [_in(ctx, node)], ctx.where(node))


def identity(ctx: Context, node: fx.Node, m: nn.Module) -> str:
    return _in(ctx, node)


def softmax(ctx: Context, node: fx.Node, m: nn.Softmax) -> str:
    axis = m.dim if m.dim is not None else -1
    return ctx.g.add("Softmax", [_in(ctx, node)], ctx.where(node), axis=int(axis))


def flatten(ctx: Context, node: fx.Node, m: nn.Flatten) -> str:
    from mpsearch.execution.export.ops_functions import flatten_value

    return flatten_value(ctx, node, _in(ctx, node), m.start_dim, m.end_dim)


def _pool_args(m: Any, k: int) -> tuple[list[int], list[int], list[int]]:
    def tup(v: Any) -> list[int]:
        return list(v) if isinstance(v, (tuple, list)) else [int(v)] * k
    kernel = tup(m.kernel_size)
    stride = tup(m.stride if m.stride is not None else m.kernel_size)
    return kernel, stride, tup(m.padding) * 2


def max_pool(ctx: Context, node: fx.Node, m: nn.MaxPool2d) -> str:
    kernel, stride, pads = _pool_args(m, 2)
    dil = list(m.dilation) if isinstance(m.dilation, tuple) else [int(m.dilation)] * 2
    return ctx.g.add("MaxPool", [_in(ctx, node)], ctx.where(node), kernel_shape=kernel, strides=stride, pads=pads,
                     dilations=dil, ceil_mode=int(m.ceil_mode))


def avg_pool(ctx: Context, node: fx.Node, m: nn.AvgPool2d) -> str:
    if m.divisor_override is not None:
        raise UnsupportedModelError(f"export_onnx: AvgPool2d {ctx.where(node)!r} has a divisor_override")
    kernel, stride, pads = _pool_args(m, 2)
    return ctx.g.add("AveragePool", [_in(ctx, node)], ctx.where(node), kernel_shape=kernel, strides=stride,
                     pads=pads, ceil_mode=int(m.ceil_mode), count_include_pad=int(m.count_include_pad))


def adaptive_avg_pool(ctx: Context, node: fx.Node, m: nn.AdaptiveAvgPool2d) -> str:
    size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
    h, w = ctx.shape(node.args[0])[-2:]
    if tuple(size) == (1, 1):
        return ctx.g.add("GlobalAveragePool", [_in(ctx, node)], ctx.where(node))
    if any(s is None or d % s for d, s in zip((h, w), size)):
        raise UnsupportedModelError(f"export_onnx: AdaptiveAvgPool2d {ctx.where(node)!r} to {size} from {h}x{w}: "
                                    "ONNX has it only where the output size divides the input size")
    kernel = [h // size[0], w // size[1]]
    return ctx.g.add("AveragePool", [_in(ctx, node)], ctx.where(node), kernel_shape=kernel, strides=kernel)


MODULE_HANDLERS: list[tuple[type, Handler]] = [
    (ActQuant, act_quant),
    (QuantConv1d, quant_conv), (QuantConv2d, quant_conv),
    (QuantLinear, quant_linear),
    (QuantEmbedding, quant_embedding),
    (nn.Linear, float_linear),
    (nn.LayerNorm, layer_norm),
    (nn.GELU, gelu), (nn.SiLU, silu),
    (nn.ReLU, _unary("Relu")), (nn.Sigmoid, _unary("Sigmoid")), (nn.Tanh, _unary("Tanh")),
    (nn.ReLU6, lambda ctx, node, m: clip(ctx, node, 0.0, 6.0)),
    (nn.Hardtanh, lambda ctx, node, m: clip(ctx, node, m.min_val, m.max_val)),
    (nn.Identity, identity), (nn.Dropout, identity),
    (nn.Softmax, softmax), (nn.Flatten, flatten),
    (nn.MaxPool2d, max_pool), (nn.AvgPool2d, avg_pool), (nn.AdaptiveAvgPool2d, adaptive_avg_pool),
]


def module_handler(module: nn.Module) -> Handler | None:
    for cls, fn in MODULE_HANDLERS:
        if isinstance(module, cls):
            return fn
    return None
