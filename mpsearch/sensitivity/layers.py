"""Which layers to analyse: discovered ones, or the caller's list."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from mpsearch.core.types import Layer
from mpsearch.errors import ConfigError, unknown_name
from mpsearch.model import discover


def select_layers(model: torch.nn.Module, layers: Sequence[Layer | str] | None, example_inputs: Any,
                  where: str = "analyze") -> list[tuple[str, torch.nn.Module]]:
    """Return ``(name, module)`` for each layer to analyse.

    Args:
        model: the network.
        layers: ``Layer`` values or module names; ``None`` means all quantizable layers as
            found by ``mpsearch.model.discover``.
        example_inputs: one batch of inputs, for ``discover``.
        where: prefix for error messages.
    """
    modules = dict(model.named_modules())
    if layers is None:
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
