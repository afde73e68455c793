"""fold_batchnorm(): fold eval-mode BatchNorm into the Conv1d / Conv2d / Linear before it.

For BN(y) = gamma * (y - mean) / sqrt(var + eps) + beta applied to y = W x + b, with
s = gamma / sqrt(var + eps) per output channel:
    W' = W * s (scaled along the output-channel axis),   b' = (b - mean) * s + beta.
The BN module is replaced by ``nn.Identity`` in a deep copy, so module names (and the
conv's state_dict keys) stay those of the original model.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Sequence

import torch
from torch import fx, nn

from mpsearch.errors import UnsupportedModelError
from mpsearch.model import _fx

log = logging.getLogger("mpsearch")

# (layer class, BN class) pairs whose channel axes line up (dim 1 of the output).
_FOLDABLE: tuple[tuple[type[nn.Module], type[nn.Module]], ...] = (
    (nn.Conv1d, nn.BatchNorm1d),
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Linear, nn.BatchNorm1d),
)
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


def _out_channels(m: nn.Module) -> int:
    return int(m.out_features) if isinstance(m, nn.Linear) else int(m.out_channels)


def _why_not(layer: nn.Module, bn: nn.Module, uses: dict[int, int]) -> str | None:
    """Reason the pair cannot be folded, or None when it can."""
    if not any(isinstance(layer, lt) and isinstance(bn, bt) for lt, bt in _FOLDABLE):
        return f"{type(bn).__name__} after {type(layer).__name__} is not a foldable pair"
    if bn.running_mean is None or bn.running_var is None:
        return "BatchNorm has no running statistics (track_running_stats=False)"
    if int(bn.num_features) != _out_channels(layer):
        return f"num_features {bn.num_features} != layer out channels {_out_channels(layer)}"
    if uses.get(id(layer), 0) != 1:
        return f"the layer is used {uses.get(id(layer), 0)} times (weight sharing)"
    if uses.get(id(bn), 0) != 1:
        return f"the BatchNorm is used {uses.get(id(bn), 0)} times"
    return None


@torch.no_grad()
def _fold_pair(layer: nn.Module, bn: nn.Module) -> None:
    """Fold ``bn`` into ``layer`` in place (float64 arithmetic, cast back to the weight dtype)."""
    w = layer.weight
    var = bn.running_var.double()
    mean = bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)  # (cout,)
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(var)
    new_w = w.double() * scale.reshape(-1, *([1] * (w.dim() - 1)))  # scale output-channel rows
    new_b = (bias - mean) * scale + beta
    layer.weight.copy_(new_w.to(w.dtype))
    if layer.bias is None:
        layer.bias = nn.Parameter(new_b.to(dtype=w.dtype, device=w.device), requires_grad=w.requires_grad)
    else:
        layer.bias.copy_(new_b.to(layer.bias.dtype))


def _use_counts(model: nn.Module) -> dict[int, int]:
    """How many names each module object has (a module under two names is shared)."""
    counts: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        counts[id(m)] = counts.get(id(m), 0) + 1
    return counts


def _pairs_fx(model: nn.Module, example_inputs: tuple[Any, ...] | None
              ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(layer, bn) pairs to fold, and (bn, reason) left alone, read from an fx trace."""
    gm = _fx.trace(model)
    shapes = _fx.node_shapes(gm, example_inputs) if example_inputs is not None else None
    names = {id(m): n for n, m in model.named_modules()}
    uses = _use_counts(model)
    n_nodes: dict[int, int] = {}  # a module called from several nodes is shared too
    for n in gm.graph.nodes:
        if n.op == "call_module":
            key = id(gm.get_submodule(n.target))
            n_nodes[key] = n_nodes.get(key, 0) + 1
    for key, count in n_nodes.items():
        uses[key] = max(uses.get(key, 0), count)
    pairs, skipped = [], []
    for n in gm.graph.nodes:
        if n.op != "call_module" or not isinstance(gm.get_submodule(n.target), _BN_TYPES):
            continue
        bn = gm.get_submodule(n.target)
        bn_name = names[id(bn)]
        src = n.args[0] if n.args else None
        if not (isinstance(src, fx.Node) and src.op == "call_module"):
            skipped.append((bn_name, "its input is not a module output"))
            continue
        layer = gm.get_submodule(src.target)
        reason = _why_not(layer, bn, uses)
        if reason is None and len(src.users) != 1:
            reason = f"the output of {names[id(layer)]} has {len(src.users)} consumers"
        if reason is None and isinstance(layer, nn.Linear) and shapes is not None \
                and len(shapes.get(src.name, ())) != 2:
            reason = f"Linear output shape {shapes.get(src.name)} is not (batch, features)"
        if reason is None:
            pairs.append((names[id(layer)], bn_name))
        else:
            skipped.append((bn_name, reason))
    return pairs, skipped


def _pairs_sequential(model: nn.Module) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Fallback without fx: (layer, bn) neighbours inside plain ``nn.Sequential`` containers."""
    names = {id(m): n for n, m in model.named_modules()}
    uses = _use_counts(model)
    pairs, skipped, paired = [], [], set()
    for _, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential) or type(seq).forward is not nn.Sequential.forward:
            continue
        children = list(seq.children())
        for prev, cur in zip(children, children[1:]):
            if isinstance(cur, _BN_TYPES):
                reason = _why_not(prev, cur, uses)
                if reason is None:
                    pairs.append((names[id(prev)], names[id(cur)]))
                    paired.add(id(cur))
                else:
                    skipped.append((names[id(cur)], reason))
    for n, m in model.named_modules():
        if isinstance(m, _BN_TYPES) and id(m) not in paired and all(n != s for s, _ in skipped):
            skipped.append((n, "not directly after a Conv1d/Conv2d/Linear in an nn.Sequential"))
    return pairs, skipped


def fold_batchnorm(model: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor] | None = None
                   ) -> nn.Module:
    """A copy of ``model`` with each foldable BatchNorm1d/2d folded into the layer before it.

    A BN is folded when its only input is the output of a Conv1d / Conv2d / Linear that
    nothing else consumes, both modules are used once, and the BN has running statistics.
    Folding uses the running statistics, so the copy matches the original in eval mode.
    With torch.fx the whole graph is checked; where fx cannot trace the model, only BN
    modules that directly follow a layer inside an ``nn.Sequential`` are folded. What was
    folded and what was not (with the reason) is logged on the ``mpsearch`` logger.

    Args:
        model: the model; it is not modified.
        example_inputs: optional; with fx, lets Linear -> BatchNorm1d be checked to act on
            (batch, features) outputs (without it a 2-D output is assumed).

    Returns:
        The folded deep copy (folded BN modules replaced by ``nn.Identity``).

    Raises:
        UnsupportedModelError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"fold_batchnorm: model must be a torch.nn.Module, but got "
                                    f"{type(model).__module__}.{type(model).__qualname__}")
    folded = copy.deepcopy(model)
    inputs = None
    if example_inputs is not None:
        from mpsearch.model.discover import as_input_tuple

        inputs = as_input_tuple(example_inputs, "fold_batchnorm")
    training = {m: m.training for m in folded.modules()}
    try:
        folded.eval()
        with torch.no_grad():
            pairs, skipped = _pairs_fx(folded, inputs)
        how = "fx"
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        how = f"nn.Sequential fallback; torch.fx failed: {type(exc).__name__}: {first_line}"
        pairs, skipped = _pairs_sequential(folded)
    finally:
        for m, flag in training.items():
            m.training = flag
    for layer_name, bn_name in pairs:
        _fold_pair(folded.get_submodule(layer_name), folded.get_submodule(bn_name))
        folded.set_submodule(bn_name, nn.Identity())
    log.info("fold_batchnorm (%s): folded %d BatchNorm(s)%s%s", how, len(pairs),
             ": " + ", ".join(f"{b} -> {lay}" for lay, b in pairs) if pairs else "",
             "; not folded: " + ", ".join(f"{b} ({r})" for b, r in skipped) if skipped else "")
    return folded
