"""Turning a failed second-order backward into a clear error that names the culprit."""

from __future__ import annotations

from typing import Any

import torch

from mpsearch.errors import UnsupportedModelError
from mpsearch.sensitivity.data import Data, LossFn, batch_loss

_MAX_NODES = 200_000  # stop walking absurdly large graphs; this is only a diagnosis


def _custom_nodes(root: Any, seen: set[int]) -> list[Any]:
    """Custom ``autograd.Function`` nodes reachable from ``root`` and not in ``seen``."""
    out, stack, visited = [], [root], set()
    while stack and len(visited) < _MAX_NODES:
        node = stack.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, torch.autograd.function.BackwardCFunction) and id(node) not in seen:
            out.append(node)
        stack.extend(n for n, _ in getattr(node, "next_functions", ()))
    return out


def find_custom_ops(model: torch.nn.Module, loss_fn: LossFn, data: Data) -> list[tuple[str, str]]:
    """``(module name, op name)`` for each custom autograd Function in the forward graph.

    Forward hooks fire innermost module first, so each node is credited to the innermost
    module whose output depends on it.
    """
    found: list[tuple[str, str]] = []
    seen: set[int] = set()

    def hook(name: str):
        def fn(_m: torch.nn.Module, _a: Any, out: Any) -> None:
            outs = out if isinstance(out, (tuple, list)) else (out,)
            for o in outs:
                if isinstance(o, torch.Tensor) and o.grad_fn is not None:
                    for node in _custom_nodes(o.grad_fn, seen):
                        seen.add(id(node))
                        found.append((name or type(model).__name__, type(node).__name__.removesuffix("Backward")))
        return fn

    hooks = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()]
    try:
        with torch.enable_grad():
            loss = batch_loss(model, loss_fn, data.batches[0])
        for node in _custom_nodes(loss.grad_fn, seen):  # custom ops in loss_fn itself
            found.append(("loss_fn", type(node).__name__.removesuffix("Backward")))
    finally:
        for h in hooks:
            h.remove()
    return found


def unsupported_error(model: torch.nn.Module, loss_fn: LossFn, data: Data, method: str, detail: str,
                      layer: str | None = None) -> UnsupportedModelError:
    """Build the error raised when ``method`` needs a double backward the model cannot do."""
    try:
        culprits = find_custom_ops(model, loss_fn, data)
    except Exception:  # the diagnosis must never hide the original failure
        culprits = []
    where = ", ".join(f"module {m!r} (autograd.Function {op})" for m, op in culprits[:5])
    parts = [f"analyze: method={method!r} needs second derivatives (a double backward) through every op, "
             f"but the backward pass could not be differentiated"]
    if where:
        parts.append(f" at {where}")
    elif layer:
        parts.append(f" for the gradient of layer {layer!r}")
    parts.append(f" ({detail.strip().splitlines()[0] if detail.strip() else 'no detail'}).")
    parts.append(' Use method="fisher" (squared gradients, first order only) or method="empirical" instead, '
                 "or give the custom op a differentiable backward.")
    return UnsupportedModelError("".join(parts))
