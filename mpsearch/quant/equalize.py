"""Cross-layer equalisation (Nagel et al. 2019, "Data-Free Quantization"): a model-level transform.

For two consecutive layers ``y = W2 relu(W1 x + b1) + b2`` the ReLU is positively homogeneous,
``relu(x / s) = relu(x) / s`` for ``s > 0``, so dividing output channel ``i`` of layer 1 (its
weights and bias) by ``s_i`` and multiplying input channel ``i`` of layer 2 by ``s_i`` leaves the
float function unchanged. ``s_i = sqrt(r1_i / r2_i)`` with ``r1_i`` the largest magnitude in
layer 1's output channel ``i`` and ``r2_i`` that of layer 2's input channel ``i`` makes both ranges
``sqrt(r1_i r2_i)``: per-tensor weight quantization then wastes less of its grid. Run it on a
BN-folded model (a BatchNorm between the two layers breaks the pair).

    pairs = equalize_(model)                    # finds conv/linear -> ReLU -> conv/linear chains by fx
    pairs = equalize_(model, pairs=[("conv1", "conv2")])
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mpsearch.core.checks import check_int
from mpsearch.errors import ConfigError, UnsupportedModelError, unknown_name

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
_RELUS = (nn.ReLU, F.relu, torch.relu, torch.relu_)


def find_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(first, second)`` module names joined by a ReLU and nothing else (torch.fx trace).

    The first layer's output must feed only the ReLU and the ReLU only the second layer; the
    second must be ungrouped or depthwise. Raises UnsupportedModelError when fx cannot trace.
    """
    import torch.fx as fx

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types on dynamic control flow
        raise UnsupportedModelError(f"equalize_: torch.fx could not trace the model ({type(exc).__name__}: {exc}); "
                                    f"pass pairs=[(first, second), ...] explicitly") from None
    modules = dict(model.named_modules())

    def mod(node: fx.Node) -> nn.Module | None:
        return modules.get(str(node.target)) if node.op == "call_module" else None

    def is_relu(node: fx.Node) -> bool:
        if node.op == "call_module":
            return type(mod(node)) is nn.ReLU
        return node.op in ("call_function", "call_method") and (node.target in _RELUS or node.target in ("relu", "relu_"))

    pairs = []
    for node in graph.nodes:
        if not isinstance(mod(node), _LAYERS) or len(node.users) != 1:
            continue
        relu = next(iter(node.users))
        if not is_relu(relu) or len(relu.users) != 1:
            continue
        nxt = next(iter(relu.users))
        second = mod(nxt)
        if isinstance(second, _LAYERS) and nxt.args and nxt.args[0] is relu and _scalable(second):
            pairs.append((str(node.target), str(nxt.target)))
    return pairs


def _scalable(layer: nn.Module) -> bool:
    groups = getattr(layer, "groups", 1)
    return groups == 1 or groups == layer.in_channels == layer.out_channels  # type: ignore[union-attr]


def _in_channel_view(w2: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """Layer 2's weight with its input channel first: ``(C_in, ...)``."""
    if getattr(layer, "groups", 1) != 1:  # depthwise: input channel i feeds output channel i only
        return w2
    return w2.transpose(0, 1)


def equalize_(model: nn.Module, pairs: Sequence[tuple[str, str]] | None = None, n_iter: int = 1) -> list[tuple[str, str]]:
    """Equalise the weight ranges of each ``(first, second)`` pair in place; returns the pairs.

    Args:
        model: the (BN-folded) float model; changed in place (a trailing ``_``).
        pairs: module names of layer pairs joined by a ReLU; None finds them (:func:`find_pairs`).
        n_iter: passes over the pairs (chains of three or more layers converge over passes).

    Raises:
        UnknownNameError: a name that is no module of the model.
        ConfigError: a pair whose channel counts disagree or whose second layer is grouped.
    """
    check_int(n_iter, "equalize_", "n_iter", min=1)
    pairs = find_pairs(model) if pairs is None else [tuple(p) for p in pairs]  # type: ignore[misc]
    modules = dict(model.named_modules())
    for first, second in pairs:  # type: ignore[misc]
        for n in (first, second):
            if not isinstance(modules.get(n), _LAYERS):
                raise unknown_name("Conv/Linear layer", n, [k for k, m in modules.items() if isinstance(m, _LAYERS)],
                                   "equalize_")
        l1, l2 = modules[first], modules[second]
        c1 = l1.weight.shape[0]
        c2 = l2.in_channels if hasattr(l2, "in_channels") else l2.in_features  # type: ignore[union-attr]
        if c1 != c2 or not _scalable(l2):
            raise ConfigError(f"equalize_: pair ({first!r}, {second!r}) must join {c1} output channels to an "
                              f"ungrouped or depthwise layer with {c1} input channels, but got {c2} "
                              f"(groups={getattr(l2, 'groups', 1)})")
    with torch.no_grad():
        for _ in range(n_iter):
            for first, second in pairs:  # type: ignore[misc]
                l1, l2 = modules[first], modules[second]
                r1 = l1.weight.detach().reshape(l1.weight.shape[0], -1).abs().amax(1).double()
                w2 = _in_channel_view(l2.weight.detach(), l2)
                r2 = w2.reshape(w2.shape[0], -1).abs().amax(1).double()
                s = torch.where((r1 > 0) & (r2 > 0), torch.sqrt(r1 / r2.clamp_min(1e-300)), torch.ones_like(r1))
                shape1 = (-1,) + (1,) * (l1.weight.dim() - 1)
                l1.weight.div_(s.reshape(shape1).to(l1.weight.dtype))
                if l1.bias is not None:
                    l1.bias.div_(s.to(l1.bias.dtype))
                view = _in_channel_view(l2.weight, l2)
                view.mul_(s.reshape((-1,) + (1,) * (view.dim() - 1)).to(view.dtype))
    return list(pairs)  # type: ignore[arg-type]
