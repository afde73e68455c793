"""Kernels of the data moves (``shape_op``) and of the declared float islands (``dequant``,
``float_op``, ``quantize``).

``shape_op`` moves integers without arithmetic (transpose, permute, slicing, split, ...).
The island kernels are the only float kernels of a program: ``dequant`` turns integers into
float32 values, ``float_op`` runs one named float function, ``quantize`` rounds back to int8
codes exactly as the fake-quant model's activation quantizer does.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from mpsearch.execution import ir
from mpsearch.execution.kernels._base import Backend, Kernel
from mpsearch.execution.kernels.per_token import per_token_linear
from mpsearch.model.attention import sdpa_attention


def _embedding_dequant(idx: Tensor, codes: Tensor, scale: Tensor, zp: Tensor) -> Tensor:
    """Rows of an int8 table with per-row scale / zero point, ``(q - zp) * s`` in float32 (the
    fake-quant table's values, gathered first)."""
    return (codes[idx].float() - zp[idx].float()) * scale[idx]


def _mul(a: Any, b: Any) -> Any:
    return a * b


def _add(a: Any, b: Any) -> Any:
    return a + b


def _sub(a: Any, b: Any) -> Any:
    return a - b


def _div(a: Any, b: Any) -> Any:
    return a / b


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    return a @ b


#: the float functions an island may run, by name (the name is what graph.json stores).
FLOAT_FNS: dict[str, Callable[..., Any]] = {
    "layer_norm": F.layer_norm, "gelu": F.gelu, "silu": F.silu, "softmax": F.softmax, "tanh": torch.tanh,
    "sigmoid": torch.sigmoid, "exp": torch.exp, "scaled_dot_product_attention": F.scaled_dot_product_attention,
    "sdpa_attention": sdpa_attention, "matmul": _matmul, "mul": _mul, "add": _add, "sub": _sub, "div": _div,
    "linear": F.linear, "embedding": F.embedding, "embedding_dequant": _embedding_dequant, "masked_fill": torch.masked_fill,
    "relu": torch.relu, "clamp": torch.clamp, "rms_norm": F.rms_norm, "mean": torch.mean,
    "per_token_linear": per_token_linear,  # w8a8t: dynamic per-token int8 rows x int8 weights (kernels.per_token)
    **{f: getattr(torch, f) for f in ("pow", "rsqrt", "sqrt", "where", "cos", "sin", "neg")},
}

def _method(name: str) -> Callable[..., Any]:
    """``x.<name>(*args, **kwargs)``: the method form also takes the function form's arguments
    (``torch.permute(x, dims)`` is ``x.permute(dims)``)."""
    return lambda x, *args, **kwargs: getattr(x, name)(*args, **kwargs)


def float_fn(name: str) -> Callable[..., Any]:
    """The float function of an island: a name of ``FLOAT_FNS``, or ``method_<m>`` for the tensor
    method ``m`` (``x.m(*args, **kwargs)``)."""
    if name.startswith("method_"):
        return _method(name.removeprefix("method_"))
    return FLOAT_FNS[name]


#: the data moves a ``shape_op`` may run, by name.
SHAPE_FNS: dict[str, Callable[..., Any]] = {
    "getitem": lambda x, i: x[i], "view": lambda x, *shape: x.reshape(*shape),
    **{n: _method(n) for n in ("transpose", "permute", "split", "chunk", "unbind", "squeeze", "unsqueeze",
                               "unflatten", "flatten", "reshape", "contiguous", "expand", "t", "movedim")},
}


def _call(fn: Callable[..., Any], call: Any, inputs: tuple[Tensor, ...], consts: tuple[Tensor, ...]) -> Any:
    args, kwargs = ir.decode(call, inputs, consts)
    return fn(*args, **kwargs)


def prepare_shape_op(op: ir.ShapeOp, device: torch.device, backend: Backend) -> Kernel:
    fn = SHAPE_FNS[op.fn]

    def run(*xs: Tensor) -> Tensor:
        y = _call(fn, op.call, xs, ())
        return y[op.select] if op.select is not None else y

    return run


def prepare_dequant(op: ir.Dequant, device: torch.device, backend: Backend) -> Kernel:
    scale = op.scale.to(device=device, dtype=torch.float64)
    zp = op.zp.to(device=device, dtype=torch.int64)
    return lambda x: ((x.to(torch.int64) - zp).to(torch.float64) * scale).to(torch.float32)


def prepare_quantize(op: ir.Quantize, device: torch.device, backend: Backend) -> Kernel:
    scale = op.scale.to(device=device, dtype=torch.float32)
    zp = op.zp.to(device=device, dtype=torch.float32)
    return lambda x: torch.clamp(torch.round(x.float() / scale) + zp, op.qmin, op.qmax).to(torch.int8)


def prepare_float_op(op: ir.FloatOp, device: torch.device, backend: Backend) -> Kernel:
    fn = float_fn(op.fn)
    consts = tuple(c.to(device) for c in op.consts)
    return lambda *xs: _call(fn, op.call, xs, consts)


KERNELS = {"shape_op": prepare_shape_op, "dequant": prepare_dequant, "quantize": prepare_quantize,
           "float_op": prepare_float_op}
