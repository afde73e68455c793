"""Handlers of the declared float islands: ops with no integer version yet (LayerNorm, softmax,
GELU / SiLU, attention, matmul and multiply of two activations, embedding lookup, adds of a
float value or a constant).

An island dequantizes its integer inputs (:class:`~mpsearch.execution.ir.Dequant`, once per
value), runs the float op (:class:`~mpsearch.execution.ir.FloatOp`) and leaves a float32 value
(``Rep.dtype == "float32"``); the next activation quantizer rounds it back to int8 codes
(:class:`~mpsearch.execution.ir.Quantize`, the simulation's own rounding). With
``IntegerConfig(integer_only=True)`` an island is refused, naming the op.

Static values (parameters and buffers read with ``get_attr``, tensor sizes, and anything computed
from them alone) are computed once when the program is built (``ctx.static``) and enter an
island as constants: ``x + self.pos[:T]`` is an island add with a constant.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from mpsearch.execution import ir
from mpsearch.execution.ops import integer_versions as iv
from mpsearch.execution.ops.weight_only import is_weight_only
from mpsearch.execution.ops._base import Context, Handler, describe, sample_shape, unsupported
from mpsearch.execution.ops._builder import Rep, compact
from mpsearch.execution.ops.per_token import is_per_token, per_token_why
from mpsearch.model.attention import sdpa_attention
from mpsearch.quant.modules import QuantEmbedding


def float_only(handler: Handler, module: nn.Module | None) -> str | None:
    """Why the op of ``handler`` (a module call's ``module``) can only run as a float island, or None
    where it is not an island or has an integer version (run in integer-only mode)."""
    if module is not None and is_weight_only(module):
        return "a weight-only layer (a_bits 16) reads float activations"
    if module is not None and is_per_token(module):
        return per_token_why(module)
    if handler not in _ALL:
        return None
    if handler is layer_norm and module is not None and len(module.normalized_shape) != 1:
        return "its integer version normalizes over the last dimension only"
    return None if handler in _INTEGER else "it has no integer version"


def _arg(node: fx.Node, i: int, name: str, default: Any = None) -> Any:
    return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)


def _int_gelu(ctx: Context, node: fx.Node) -> Rep:
    return iv.gelu(ctx, node, ctx.rep(node.args[0], node))


def _int_silu(ctx: Context, node: fx.Node) -> Rep:
    return iv.silu(ctx, node, ctx.rep(node.args[0], node))


def _int_softmax(ctx: Context, node: fx.Node) -> Rep:
    return iv.softmax(ctx, node, ctx.rep(node.args[0], node), int(_arg(node, 1, "dim")))


def _int_product(matmul: bool) -> Handler:
    def run(ctx: Context, node: fx.Node) -> Rep:
        a, b = node.args[0], node.args[1]
        if not isinstance(a, fx.Node):  # c * x
            a, b = b, a
        return iv.product(ctx, node, a, b, matmul)
    return run


def _int_sdpa(ctx: Context, node: fx.Node) -> Rep:
    from mpsearch.execution.ops.int_attention import sdpa
    return sdpa(ctx, node)


def _int_packed_sdpa(ctx: Context, node: fx.Node) -> Rep:
    from mpsearch.execution.ops.int_attention import packed_sdpa
    return packed_sdpa(ctx, node)


#: island name -> its integer version (``(ctx, node) -> Rep``), run in integer-only mode.
INTEGER_VERSIONS = {"gelu": _int_gelu, "silu": _int_silu, "softmax": _int_softmax, "matmul": _int_product(True),
                    "mul": _int_product(False), "scaled_dot_product_attention": _int_sdpa,
                    "sdpa_attention": _int_packed_sdpa}


def float_rep(name: str, shape: tuple[int, ...]) -> Rep:
    """The Rep of a float32 island value (scale 1: the tensor holds the real values)."""
    return Rep(value=name, dtype="float32", shape=shape, scale=np.float64(1), zp=np.int64(0), lo=np.int64(0),
               hi=np.int64(0))


def _dequantized(ctx: Context, rep: Rep, source: str) -> str:
    """The float32 value of ``rep`` (a ``dequant`` op, emitted once per integer value)."""
    if rep.dtype == "float32":
        return rep.value
    rep = ctx.b.materialize(rep, source)
    if rep.value not in ctx.dequantized:
        name = ctx.b.name(f"{rep.value}_f")
        ctx.b.emit(ir.Dequant(name=name, inputs=(rep.value,), source=source,
                              scale=torch.from_numpy(np.asarray(rep.scale, dtype=np.float64).copy()),
                              zp=torch.from_numpy(np.asarray(rep.zp, dtype=np.int64).copy())))
        ctx.dequantized[rep.value] = name
    return ctx.dequantized[rep.value]


def refuse_if_integer_only(ctx: Context, node: fx.Node, fn: str) -> None:
    if ctx.integer_only:
        raise unsupported(node, ctx, f"the plan asks for integer-only execution (integer_only=True), but "
                                     f"{fn} has no integer version in the executor; it could only run as a float "
                                     "island (allow it with IntegerConfig(integer_only=False))")


def island(ctx: Context, node: fx.Node, fn: str, args: tuple[Any, ...], kwargs: dict[str, Any],
           consts: tuple[torch.Tensor, ...] = ()) -> Rep:
    """Emit ``fn(*args, **kwargs)`` as a float island; fx nodes among the arguments become its
    inputs (dequantized) or constants (static values); ``consts`` are extra constant tensors
    passed in ``args`` / ``kwargs`` as themselves."""
    refuse_if_integer_only(ctx, node, f"{describe(node, ctx.gm)} ({fn})")
    source = f"{node.name} ({describe(node, ctx.gm)})"
    inputs: dict[int, int] = {}
    const_ids: dict[int, int] = {id(c): i for i, c in enumerate(consts)}
    const_list = list(consts)
    values: list[str] = []

    def sub(v: Any) -> Any:
        if isinstance(v, fx.Node):
            if v in ctx.static:
                s = ctx.static[v]
                if isinstance(s, torch.Tensor):
                    const_ids[id(s)] = len(const_list)
                    const_list.append(s)
                return s
            rep = ctx.reps[v]
            if not isinstance(rep, Rep) or rep.dtype not in ("int8", "int32", "float32", "index"):
                raise unsupported(node, ctx, f"input {v.name!r} is not a tensor value of the program")
            value = rep.value if rep.dtype == "index" else _dequantized(ctx, rep, source)
            marker = ("__value__", value)
            inputs[id(marker)] = len(values)
            values.append(value)
            return marker
        if isinstance(v, (tuple, list)):
            return type(v)(sub(x) for x in v)
        if isinstance(v, slice):
            return slice(sub(v.start), sub(v.stop), sub(v.step))
        if isinstance(v, dict):
            return {k: sub(x) for k, x in v.items()}
        return v

    call = (sub(tuple(args)), sub(dict(kwargs)))
    encoded = ir.encode(call, inputs, const_ids)
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.FloatOp(name=name, inputs=tuple(values), source=source, fn=fn, call=encoded,
                          consts=tuple(const_list)))
    return float_rep(name, sample_shape(node))


def function_island(fn: str) -> Handler:
    """A handler running a call_function / call_method node as the island ``fn`` with its own args."""
    def handler(ctx: Context, node: fx.Node, *_: Any) -> Rep:
        if ctx.integer_only and fn in INTEGER_VERSIONS:
            return INTEGER_VERSIONS[fn](ctx, node)
        return island(ctx, node, fn, tuple(node.args), dict(node.kwargs))
    handler.__name__ = f"island_{fn}"
    return handler


def layer_norm(ctx: Context, node: fx.Node, m: nn.LayerNorm) -> Rep:
    if ctx.integer_only:
        return iv.layer_norm(ctx, node, m, ctx.rep(node.args[0], node))
    w = None if m.weight is None else m.weight.detach().float().cpu().clone()
    b = None if m.bias is None else m.bias.detach().float().cpu().clone()
    consts = tuple(t for t in (w, b) if t is not None)
    return island(ctx, node, "layer_norm", (node.args[0], tuple(m.normalized_shape), w, b, float(m.eps)), {},
                  consts)


def gelu_module(ctx: Context, node: fx.Node, m: nn.GELU) -> Rep:
    if ctx.integer_only:
        return iv.gelu(ctx, node, ctx.rep(node.args[0], node))
    return island(ctx, node, "gelu", (node.args[0],), {"approximate": m.approximate})


def silu_module(ctx: Context, node: fx.Node, m: nn.Module) -> Rep:
    if ctx.integer_only:
        return iv.silu(ctx, node, ctx.rep(node.args[0], node))
    return island(ctx, node, "silu", (node.args[0],), {})


def softmax_module(ctx: Context, node: fx.Node, m: nn.Softmax) -> Rep:
    if ctx.integer_only:
        return iv.softmax(ctx, node, ctx.rep(node.args[0], node), int(m.dim))
    return island(ctx, node, "softmax", (node.args[0], m.dim), {})


def _index_input(ctx: Context, node: fx.Node) -> fx.Node:
    """The index tensor of an embedding: a model input passed through as int64 (``kind="index"``)."""
    src = node.args[0]
    while (isinstance(src, fx.Node) and src.op == "call_method" and src.target in ("view", "reshape", "contiguous")
           and isinstance(src.args[0], fx.Node) and ctx.reps.get(src) is ctx.reps.get(src.args[0])):
        src = src.args[0]  # ``input_ids.view(-1, T)``: the model input itself (shape.reshape aliased it)
    rep = ctx.reps.get(src) if isinstance(src, fx.Node) else None
    if rep is None or not isinstance(rep, Rep) or rep.dtype not in ("float", "index"):
        raise unsupported(node, ctx, "the indices of an embedding must be a model input")
    if rep.dtype == "float":
        name = ctx.b.name(src.name)
        ctx.inputs.append(ir.InputQuant(name=name, source=f"{src.name} (indices)", scale=1.0, zero_point=0,
                                        qmin=0, qmax=0, bits=64, sample_shape=tuple(src.meta["tensor_meta"].shape[1:]),
                                        kind="index"))
        ctx.reps[src] = Rep(value=name, dtype="index", shape=(), scale=np.float64(1), zp=np.int64(0),
                            lo=np.int64(0), hi=np.int64(0))
    return src


def embedding_codes(m: QuantEmbedding) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int8 codes ``(V, D)``, float32 per-row scale ``(V, 1)`` and int32 zero point ``(V, 1)``."""
    from mpsearch.quant.quantizer import quantize as quantize_codes

    wq = m.weight_quant
    codes = quantize_codes(m.weight.detach().float().cpu(), wq.scale.cpu(), wq.zero_point.cpu(), wq.spec)
    rows = m.weight.shape[0]
    scale = wq.scale.detach().float().cpu().reshape(-1, 1).expand(rows, 1).contiguous()
    zp = wq.zero_point.detach().cpu().to(torch.int32).reshape(-1, 1).expand(rows, 1).contiguous()
    return codes.to(torch.int8), scale, zp


def quant_embedding(ctx: Context, node: fx.Node, m: QuantEmbedding) -> Rep:
    if m.max_norm is not None:
        raise unsupported(node, ctx, "an embedding with max_norm is not supported")
    src = _index_input(ctx, node)
    if m.weight_quant.spec.bits > 8:  # w16a16: 16-bit codes do not fit int8; the simulated table in float
        w = m.quantized_weight().detach().float().cpu().clone()
        return island(ctx, node, "embedding", (src, w), {}, (w,))
    codes, scale, zp = embedding_codes(m)
    if ctx.integer_only:
        return iv.embedding(ctx, node, src, codes, scale, zp)
    return island(ctx, node, "embedding_dequant", (src, codes, scale, zp), {}, (codes, scale, zp))


def float_embedding(ctx: Context, node: fx.Node, m: nn.Embedding) -> Rep:
    src = _index_input(ctx, node)
    w = m.weight.detach().float().cpu().clone()
    return island(ctx, node, "embedding", (src, w), {}, (w,))


def quantize_float(ctx: Context, node: fx.Node, x: Rep, scale: np.ndarray, zp: np.ndarray, qmin: int, qmax: int,
                   bits: int, source: str) -> Rep:
    """int8 codes of a float32 island value: the activation quantizer's own rounding."""
    nd = len(sample_shape(node))
    name = ctx.b.name(node.name)
    ctx.b.emit(ir.Quantize(name=name, inputs=(x.value,), source=source,
                           scale=torch.from_numpy(compact(np.asarray(scale, dtype=np.float32), nd).copy()),
                           zp=torch.from_numpy(compact(np.asarray(zp, dtype=np.int64), nd).copy()),
                           qmin=qmin, qmax=qmax, bits=bits))
    return Rep(value=name, dtype="int8", shape=sample_shape(node), scale=scale, zp=zp, lo=np.int64(qmin),
               hi=np.int64(qmax), bits=bits)


def is_float_or_static(ctx: Context, arg: Any) -> bool:
    """True when ``arg`` is a static value (constant), a float island value or a Python number."""
    if not isinstance(arg, fx.Node):
        return True
    if arg in ctx.static:
        return True
    rep = ctx.reps.get(arg)
    return isinstance(rep, Rep) and rep.dtype == "float32"


MODULES: tuple[tuple[type[nn.Module], Handler], ...] = (
    (QuantEmbedding, quant_embedding),
    (nn.Embedding, float_embedding),
    (nn.LayerNorm, layer_norm),
    (nn.GELU, gelu_module),
    (nn.SiLU, silu_module),
    (nn.Softmax, softmax_module),
)
FUNCTIONS: dict[Any, Handler] = {
    F.layer_norm: function_island("layer_norm"), F.gelu: function_island("gelu"), F.silu: function_island("silu"),
    F.softmax: function_island("softmax"), torch.softmax: function_island("softmax"),
    F.scaled_dot_product_attention: function_island("scaled_dot_product_attention"),
    sdpa_attention: function_island("sdpa_attention"), torch.matmul: function_island("matmul"),
    operator.matmul: function_island("matmul"), torch.bmm: function_island("matmul"),
    operator.mul: function_island("mul"), torch.mul: function_island("mul"), operator.sub: function_island("sub"),
    torch.sub: function_island("sub"), operator.truediv: function_island("div"), torch.tanh: function_island("tanh"),
    torch.sigmoid: function_island("sigmoid"), torch.exp: function_island("exp"),
    F.embedding: function_island("embedding"), torch.masked_fill: function_island("masked_fill"),
}
METHODS: dict[str, Handler] = {
    "softmax": function_island("softmax"), "matmul": function_island("matmul"), "mul": function_island("mul"),
    "sub": function_island("sub"), "div": function_island("div"), "tanh": function_island("tanh"),
    "sigmoid": function_island("sigmoid"), "exp": function_island("exp"),
    "masked_fill": function_island("masked_fill"),
}

_ALL = frozenset([h for _, h in MODULES] + list(FUNCTIONS.values()) + list(METHODS.values()))
_INTEGER = frozenset([quant_embedding, layer_norm, gelu_module, silu_module, softmax_module]
                     + [h for h in list(FUNCTIONS.values()) + list(METHODS.values())
                        if h.__name__.removeprefix("island_") in INTEGER_VERSIONS])
