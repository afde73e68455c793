"""with_call(): a model whose forward takes only tensors and returns one tensor.

Models with keyword options and structured outputs (those of the ``transformers`` library:
``model(input_ids, use_cache=..., return_dict=...)`` returning a ``ModelOutput``) do not fit a
pipeline that calls ``model(*inputs)`` and reads one tensor (a loss on logits, an argmax, an
integer program with one output). :func:`with_call` fixes the keyword arguments and picks one
output, and keeps every module name, Parameter and tie of the model: the result is a copy whose
class is a subclass of the model's own class with only ``forward`` replaced, so ``discover``
names (``transformer.h.0.attn.c_attn``) are the same as on the original.

Example:
    >>> lm = with_call(GPT2LMHeadModel(cfg).eval(), ("input_ids",), use_cache=False, return_dict=False)
    >>> layers = discover(lm, input_ids)          # lm(input_ids) -> logits [B, T, V]
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from mpsearch.errors import rule_error

_SUBCLASSES: dict[tuple[type, tuple[str, ...]], type] = {}


def _call(self: nn.Module, inputs: dict[str, Any]) -> Any:
    base = next(c for c in type(self).__mro__ if c not in _SUBCLASSES.values())
    if self._call_by_name:
        out = base.forward(self, **inputs, **self._call_kwargs)
    else:
        out = base.forward(self, *inputs.values(), **self._call_kwargs)
    return out[self._call_output]


def _forward_of(names: tuple[str, ...]) -> Any:
    """``forward(self, <names>)``: torch.fx reads the parameter names off the code object, so the
    signature must be spelled out (``*inputs`` would trace as one argument)."""
    params = ", ".join(names)
    scope: dict[str, Any] = {"_call": _call}
    exec(f"def forward(self, {params}):\n    return _call(self, dict({', '.join(f'{n}={n}' for n in names)}))",
         scope)
    return scope["forward"]


def _subclass(cls: type, names: tuple[str, ...]) -> type:
    """``cls`` with the fixed-call forward taking ``names`` (one subclass per class and names)."""
    if (cls, names) not in _SUBCLASSES:
        _SUBCLASSES[(cls, names)] = type(f"{cls.__name__}WithCall", (cls,),
                                         {"forward": _forward_of(names), "__module__": __name__})
    return _SUBCLASSES[(cls, names)]


def with_call(model: nn.Module, inputs: tuple[str, ...] | None = None, output: int | str = 0,
              **kwargs: Any) -> nn.Module:
    """A copy of ``model`` whose ``forward(*inputs)`` is ``model(*inputs, **kwargs)[output]``.

    Args:
        model: any ``nn.Module``; it is not changed.
        inputs: names of the tensor arguments the new forward takes, in order, passed to the
            model by name (``("input_ids",)`` for a ``transformers`` model, whose second
            positional argument is a cache); default: one argument, passed by position.
        output: which output to return: an index (``0`` = the logits of a ``transformers`` model
            called with ``return_dict=False``) or a key (``"logits"``).
        **kwargs: keyword arguments fixed on every call (``use_cache=False``, ``return_dict=False``).

    Returns:
        The copy; same module names, Parameters tied as in ``model``, same training flag.
    """
    if not isinstance(model, nn.Module):
        raise rule_error("with_call", "model", "a torch.nn.Module", type(model).__name__)
    if inputs is not None and not (isinstance(inputs, tuple) and inputs
                                   and all(isinstance(n, str) and n.isidentifier() for n in inputs)):
        raise rule_error("with_call", "inputs", "a non-empty tuple of argument names", inputs)
    if not isinstance(output, (int, str)):
        raise rule_error("with_call", "output", "an index or a key", output)
    base = type(model)
    while base in _SUBCLASSES.values():  # wrapping a wrapped model replaces its call
        base = base.__mro__[1]
    copied = copy.deepcopy(model)
    copied.__class__ = _subclass(base, inputs or ("input",))
    copied._call_by_name = inputs is not None
    copied._call_kwargs = dict(kwargs)
    copied._call_output = output
    return copied
