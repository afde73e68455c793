"""Op handlers: one converter per fx op of a fake-quant graph, grouped in one module per op family.

Each handler reads the :class:`Rep` of its inputs, emits integer ops and returns the
:class:`Rep` of its output (the contract and how to add a family: :mod:`._base`). The tables
here, merged from the families, decide what is supported: an op found in none of them is
refused by :func:`mpsearch.execution.convert.to_integer` before anything runs.

* :mod:`.layers`: activation quantizers, quantized conv and linear;
* :mod:`.elementwise`: ReLU, ReLU6, clamps, residual adds, concatenation;
* :mod:`.shape`: identities, reshapes, flatten, size queries;
* :mod:`.pooling`: max and average pooling, mean;
* :mod:`.islands`: declared float islands (LayerNorm, softmax, GELU, attention, embedding, ...);
* :mod:`.torch_islands`: float islands of plain torch ops in traced library models (casts, powers, where, ...).
"""

from __future__ import annotations

from typing import Any

from torch import fx, nn

from mpsearch.execution.ops import elementwise, islands, layers, pooling, shape, torch_islands
from mpsearch.execution.ops._base import Context, Handler, describe, unsupported
from mpsearch.execution.ops._builder import Builder, Rep

__all__ = ["FAMILIES", "FUNCTION_HANDLERS", "METHOD_HANDLERS", "MODULE_HANDLERS", "Builder", "Context",
           "Handler", "Rep", "describe", "handler_for", "unsupported"]

#: the op families; a new family is a module with MODULES / FUNCTIONS / METHODS tables, listed here.
FAMILIES = (layers, shape, elementwise, pooling, islands, torch_islands)


def _merge_keyed(attr: str) -> dict[Any, Handler]:
    table: dict[Any, Handler] = {}
    for family in FAMILIES:
        new: dict[Any, Handler] = getattr(family, attr)
        clash = [k for k in new if k in table]
        if clash:
            raise ValueError(f"ops: {attr} {clash} have handlers in two families (one is {family.__name__})")
        table.update(new)
    return table


#: module types (first isinstance match wins) -> converter(ctx, node, module).
MODULE_HANDLERS: tuple[tuple[type[nn.Module], Handler], ...] = tuple(
    entry for family in FAMILIES for entry in family.MODULES)
#: functions (call_function targets) -> converter(ctx, node).
FUNCTION_HANDLERS: dict[Any, Handler] = _merge_keyed("FUNCTIONS")
#: tensor methods (call_method names) -> converter(ctx, node).
METHOD_HANDLERS: dict[str, Handler] = _merge_keyed("METHODS")


def handler_for(node: fx.Node, gm: fx.GraphModule) -> tuple[Handler, nn.Module | None] | None:
    """The handler of ``node`` and, for a module call, its module; None where none is registered."""
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        for cls, fn in MODULE_HANDLERS:
            if isinstance(module, cls):
                return fn, module
        return None
    if node.op == "call_function":
        fn = FUNCTION_HANDLERS.get(node.target)
        return (fn, None) if fn is not None else None
    if node.op == "call_method":
        fn = METHOD_HANDLERS.get(str(node.target))
        return (fn, None) if fn is not None else None
    return None
