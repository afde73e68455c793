"""Handler of weight-only linear layers (``a_bits`` 16: the activation stays float).

The layer reads a float value (a float island's, or an integer value dequantized) and runs as
``wo_linear`` on torch's int4 / int8 weight kernels (:mod:`mpsearch.execution.kernels.weight_only`):
a float op, listed by :attr:`IntegerModel.float_ops`, and refused in integer-only mode.
"""

from __future__ import annotations

import torch
from torch import fx, nn

from mpsearch.execution import ir
from mpsearch.execution.ops._base import Context, sample_shape, unsupported
from mpsearch.execution.ops._builder import Rep
from mpsearch.quant.modules import QuantLinear
from mpsearch.quant.quantizer import quantize as quantize_codes

#: ``a_bits`` of a weight-only layer (its input is not quantized).
FLOAT_A_BITS = 16


def is_weight_only(m: nn.Module) -> bool:
    return isinstance(m, QuantLinear) and int(m.a_bits) >= FLOAT_A_BITS


def weight_only_linear(ctx: Context, node: fx.Node, m: nn.Module) -> Rep:
    from mpsearch.execution.ops.islands import _dequantized, float_rep

    if ctx.integer_only:
        raise unsupported(node, ctx, "a weight-only layer (a_bits 16) reads float activations; integer-only "
                                     "execution needs an activation quantizer before it (e.g. w8a8)")
    wq = m.weight_quant
    spec = wq.spec
    if spec.bits > 8:  # w16a16, "keep in 16-bit": the simulation's 16-bit weight, in a float linear
        from mpsearch.execution.ops.islands import island

        w = m.quantized_weight().detach().float().cpu().clone()
        b = None if m.bias is None else m.bias.detach().float().cpu().clone()
        rep16 = island(ctx, node, "linear", (node.args[0], w, b), {}, tuple(t for t in (w, b) if t is not None))
        ctx.layers[str(node.target)] = rep16.value
        return rep16
    codes = quantize_codes(m.weight.detach().float().cpu(), wq.scale.cpu(), wq.zero_point.cpu(), spec).to(torch.int8)
    n = codes.shape[0]
    scale = wq.scale.detach().float().cpu().reshape(n, -1) if wq.scale.numel() > 1 else \
        wq.scale.detach().float().cpu().reshape(1, 1).expand(n, 1)
    zp = wq.zero_point.detach().cpu().to(torch.int32).reshape(scale.shape[0], -1).expand_as(scale).contiguous()
    group = int(spec.group_size) if spec.granularity == "per_group" else None
    src = node.args[0]
    rep = ctx.reps[src]
    source = f"{node.name} ({node.target})"
    x = _dequantized(ctx, rep, source)
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.WeightOnlyLinear(name=name, inputs=(x,), source=source, codes=codes, scale=scale.contiguous(),
                                   zp=zp, bias=None if m.bias is None else m.bias.detach().float().cpu().clone(),
                                   group_size=group, w_bits=int(spec.bits)))
    ctx.layers[str(node.target)] = name
    return float_rep(name, sample_shape(node))
