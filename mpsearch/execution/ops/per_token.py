"""Handlers of linear layers with dynamic per-token activations (``w8a8t``, ``a_mode`` "dynamic_per_token").

In the graph of :func:`mpsearch.quantize` such a layer reads an :class:`ActQuant` in mode
"dynamic" with ``per_token`` granularity: a separate node before it. Its row scales come from each
row's own float min / max at run time, so the pair is not integer-only by nature. The layer
handler fuses both: the ActQuant node passes its float input through (no op), and the layer runs
as the declared float island ``per_token_linear`` (:mod:`mpsearch.execution.kernels.per_token`:
per-row codes, int8 x int8 -> int32 GEMM, dequantized with row x channel scale, float bias),
listed by :attr:`IntegerModel.float_ops` and refused in integer-only mode by name.
"""

from __future__ import annotations

import torch
from torch import fx, nn

from mpsearch.execution.ops._base import Context, unsupported
from mpsearch.execution.ops._builder import Rep
from mpsearch.quant.modules import ActQuant, QuantLinear

WHY_FLOAT = ("dynamic per-token activation quantization (w8a8t) needs a float max per row at run time, "
             "so it has no integer-only form")


def is_per_token(aq: nn.Module) -> bool:
    """Whether ``aq`` is a dynamic per-token activation quantizer."""
    return isinstance(aq, ActQuant) and aq.mode == "dynamic" and aq.spec.granularity == "per_token"


def per_token_why(aq: ActQuant) -> str:
    """Why a dynamic per-token quantizer (and the layers reading it) can only run as a float island."""
    layers = ", ".join(aq.consumers) or "its readers"
    return f"layer(s) {layers} read a dynamic per-token activation quantizer: {WHY_FLOAT}"


def _quantizer_of(ctx: Context, node: fx.Node) -> ActQuant | None:
    src = node.args[0] if node.args else node.kwargs.get("input")
    if isinstance(src, fx.Node) and src.op == "call_module":
        aq = ctx.gm.get_submodule(str(src.target))
        if is_per_token(aq):
            return aq  # type: ignore[return-value]
    return None


def reads_per_token(ctx: Context, node: fx.Node) -> bool:
    """Whether the layer ``node`` reads a dynamic per-token ActQuant."""
    return _quantizer_of(ctx, node) is not None


def per_token_act_quant(ctx: Context, node: fx.Node, aq: ActQuant) -> Rep:
    """The ActQuant node: its float input passes through; each reading layer quantizes its rows."""
    readers = [u for u in node.users if u not in ctx.static and not (  # (shape queries are static)
        u.op == "call_module" and isinstance(ctx.gm.get_submodule(str(u.target)), QuantLinear))]
    if readers:
        raise unsupported(node, ctx, f"a dynamic per-token activation quantizer must feed only quantized linear "
                                     f"layers, but {readers[0].name!r} reads it too")
    if ctx.integer_only:
        raise unsupported(node, ctx, f"the plan asks for integer-only execution (integer_only=True), but "
                                     f"{per_token_why(aq)} (allow it with IntegerConfig(integer_only=False))")
    rep = ctx.reps[node.args[0]]
    if rep.dtype == "float":
        raise unsupported(node, ctx, "a dynamic per-token quantizer on the model input is not supported")
    return rep


def per_token_linear(ctx: Context, node: fx.Node, m: nn.Module) -> Rep:
    """The layer: one ``per_token_linear`` float island (row quantization fused in)."""
    from mpsearch.execution.ops.islands import island
    from mpsearch.execution.ops.layers import _weight_codes

    aq = _quantizer_of(ctx, node)
    assert aq is not None
    if ctx.integer_only:  # (the quantizer node refuses first; kept for a layer reached otherwise)
        raise unsupported(node, ctx, f"the plan asks for integer-only execution, but {WHY_FLOAT}")
    codes, w_scale = _weight_codes(node, ctx, m)
    spec = aq.spec
    scale = torch.from_numpy(w_scale.copy()).float().expand(codes.shape[0]).contiguous()
    bias = None if m.bias is None else m.bias.detach().float().cpu().clone()
    args = (node.args[0] if node.args else node.kwargs["input"], codes, scale, bias, int(spec.bits),
            bool(spec.symmetric), bool(spec.signed), bool(spec.restricted_range))
    rep = island(ctx, node, "per_token_linear", args, {}, tuple(t for t in (codes, scale, bias) if t is not None))
    ctx.layers[str(node.target)] = rep.value
    return rep
