"""Call templates: the arguments of a data move or float-island call as plain data (graph.json).

``encode`` replaces the op's input tensors with ``{"in": i}`` and its constant tensors with
``{"const": j}``, and tags slices, Ellipsis, tuples and dtypes; ``decode`` rebuilds the call
from the input and constant tensors when the kernel runs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def encode(v: Any, inputs: dict[int, int], consts: dict[int, int]) -> Any:
    """A call argument as plain data: a value node (by id) -> ``{"in": i}``, a constant tensor ->
    ``{"const": j}``, slices / Ellipsis / tuples tagged, numbers as they are."""
    if id(v) in inputs:
        return {"in": inputs[id(v)]}
    if id(v) in consts:
        return {"const": consts[id(v)]}
    if isinstance(v, slice):
        return {"slice": [encode(v.start, inputs, consts), encode(v.stop, inputs, consts),
                          encode(v.step, inputs, consts)]}
    if v is Ellipsis:
        return {"ellipsis": True}
    if isinstance(v, tuple):
        return {"tuple": [encode(x, inputs, consts) for x in v]}
    if isinstance(v, list):
        return [encode(x, inputs, consts) for x in v]
    if isinstance(v, dict):
        return {"kwargs": {k: encode(x, inputs, consts) for k, x in v.items()}}
    if isinstance(v, torch.dtype):
        return {"dtype": str(v).replace("torch.", "")}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"encode: cannot store {type(v).__name__} {v!r} in a program")


def decode(v: Any, inputs: tuple[Tensor, ...], consts: tuple[Tensor, ...]) -> Any:
    """Inverse of :func:`encode` given the input and constant tensors."""
    if isinstance(v, list):
        return [decode(x, inputs, consts) for x in v]
    if not isinstance(v, dict):
        return v
    if "in" in v:
        return inputs[v["in"]]
    if "const" in v:
        return consts[v["const"]]
    if "slice" in v:
        return slice(*(decode(x, inputs, consts) for x in v["slice"]))
    if "ellipsis" in v:
        return Ellipsis
    if "tuple" in v:
        return tuple(decode(x, inputs, consts) for x in v["tuple"])
    if "dtype" in v:
        return getattr(torch, v["dtype"])
    return {k: decode(x, inputs, consts) for k, x in v["kwargs"].items()}
