"""One converter per fx op of a fake-quant graph: each reads the :class:`Rep` of its inputs,
emits integer ops and returns the :class:`Rep` of its output.

The converters live in ``_layer_handlers``, ``_shape_handlers`` and ``_pool_handlers``; the
registries here decide what is supported; an op missing from them is refused by
:func:`mpsearch.execution.convert.to_integer` before anything runs.
"""

from __future__ import annotations

import operator
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from mpsearch.execution._builder import Rep
from mpsearch.execution._context import Context, describe
from mpsearch.execution._layer_handlers import act_quant, quant_conv, quant_linear
from mpsearch.execution._pool_handlers import avgpool, maxpool, mean
from mpsearch.execution._shape_handlers import (add, cat, clamp_fn, contiguous, hardtanh_module, identity, relu,
                                                relu6, reshape, shape_value)
from mpsearch.quant.modules import ActQuant, QuantConv1d, QuantConv2d, QuantLinear

__all__ = ["Context", "Handler", "describe", "MODULE_HANDLERS", "FUNCTION_HANDLERS", "METHOD_HANDLERS"]

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
