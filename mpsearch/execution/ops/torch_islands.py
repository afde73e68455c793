"""Float islands for the plain torch ops that traced library models contain (``transformers``'
GPT-2, LLaMA, BERT through :func:`mpsearch.model.with_call`): dtype casts, powers and roots
(RMSNorm as ``x * rsqrt(mean(x.pow(2)) + eps)``), ``torch.where`` masks, rotary embedding
``cos`` / ``sin`` / negation, broadcasts (``expand``, grouped-query ``repeat``).

Each runs as a declared float island (:func:`~.islands.island`: dequantize, the float op, the
next activation quantizer rounds back) and is listed by ``validate``; ops on static values
alone (causal masks and rotary tables built from sizes) never get here, they are computed once
when the program is built (``convert.static_nodes``). None has an integer version, so
integer-only mode refuses them by name.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import nn

from mpsearch.execution.ops._base import Handler
from mpsearch.execution.ops.islands import function_island

#: torch functions run as islands under their own name (``kernels.islands.FLOAT_FNS``).
_FUNCTIONS = ("pow", "rsqrt", "sqrt", "where", "cos", "sin", "neg")
#: tensor methods run as islands, as ``method_<name>`` (any tensor method, by name).
_METHODS = ("type", "to", "float", "pow", "rsqrt", "sqrt", "cos", "sin", "neg", "expand", "repeat",
            "repeat_interleave", "type_as", "masked_fill_")

MODULES: tuple[tuple[type[nn.Module], Handler], ...] = ()
FUNCTIONS: dict[Any, Handler] = {
    **{getattr(torch, f): function_island(f) for f in _FUNCTIONS},
    operator.neg: function_island("neg"), operator.pow: function_island("pow"),
}
METHODS: dict[str, Handler] = {m: function_island(f"method_{m}") for m in _METHODS}
