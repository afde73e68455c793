"""Which layers to analyse: discovered ones, or the caller's list."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from mpsearch.core.types import Layer
from mpsearch.errors import ConfigError, unknown_name

_QUANTIZABLE = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)


def _fallback_names(model: torch.nn.Module) -> list[str]:
    # Used only when mpsearch.model.discover is not installed: Conv1d/Conv2d/Linear in
    # registration order (discover() orders by execution and knows more kinds).
    return [n for n, m in model.named_modules() if isinstance(m, _QUANTIZABLE)]


def select_layers(model: torch.nn.Module, layers: Sequence[Layer | str] | None, example_inputs: Any,
                  where: str = "analyze") -> list[tuple[str, torch.nn.Module]]:
    """Return ``(name, module)`` for each layer to analyse.

    Args:
        model: the network.
        layers: ``Layer`` values or module names; ``None`` means all quantizable layers as
            found by ``mpsearch.model.discover`` (or, if that is missing, every Conv1d,
            Conv2d and Linear).
        example_inputs: one batch of inputs, for ``discover``.
        where: prefix for error messages.
    """
    modules = dict(model.named_modules())
    if layers is None:
        try:
            from mpsearch.model import discover  # type: ignore[attr-defined]
        except ImportError:
            names = _fallback_names(model)
        else:
            with torch.no_grad():
                names = [lay.name for lay in discover(model, example_inputs)]
    else:
        names = [lay.name if isinstance(lay, Layer) else str(lay) for lay in layers]
    out = []
    for name in names:
        if name not in modules:
            raise unknown_name("module", name, [n for n in modules if n], where)
        mod = modules[name]
        w = getattr(mod, "weight", None)
        if not isinstance(w, torch.Tensor):
            raise ConfigError(f"{where}: layer {name!r} must have a weight tensor, but it is a {type(mod).__name__} without one")
        out.append((name, mod))
    if not out:
        raise ConfigError(f"{where}: the model must have at least one quantizable layer, but none was found")
    return out
