"""Capture the float input activations of named layers on calibration batches.

The data-needing methods (AdaRound, bias correction, GPTQ, Hessian-weighted k-means) take one
layer's inputs as ``calib_inputs``; :func:`capture_inputs` runs the model once over the batches
with forward pre-hooks and returns them stacked on dim 0, per layer name.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import Tensor, nn

from mpsearch.core.checks import check_int
from mpsearch.errors import ConfigError, unknown_name


def _positional(batch: Any, index: int) -> tuple[Any, ...]:
    if isinstance(batch, Tensor):
        return (batch,)
    if isinstance(batch, (tuple, list)) and batch:
        first = batch[0]
        return tuple(first) if isinstance(first, (tuple, list)) else (first,)
    raise ConfigError(f"capture_inputs: batches[{index}] must be a tensor or an (inputs, labels) pair, "
                      f"but got {type(batch).__name__}")


def capture_inputs(model: nn.Module, names: Sequence[str], batches: Iterable[Any],
                   max_examples: int | None = None) -> dict[str, Tensor]:
    """Inputs of the modules ``names`` on ``batches`` (the model runs in eval mode, no gradient).

    Args:
        model: the float model (its mode is restored afterwards).
        names: module names (``model.named_modules()``) whose first positional input is kept.
        batches: tensors or ``(inputs, labels)`` pairs, as calibration batches are given.
        max_examples: keep at most this many examples (dim 0) per layer; None keeps all.

    Returns:
        name -> float32 tensor of the inputs stacked on dim 0 (detached, on the model's device).

    Raises:
        UnknownNameError: a name that is no module of the model.
        ConfigError: no batch, or a layer the batches never reached.
    """
    if max_examples is not None:
        check_int(max_examples, "capture_inputs", "max_examples", min=1)
    modules = dict(model.named_modules())
    for n in names:
        if n not in modules:
            raise unknown_name("layer", n, [m for m in modules if m], "capture_inputs")
    kept: dict[str, list[Tensor]] = {n: [] for n in names}
    counts = dict.fromkeys(names, 0)

    def hook_for(n: str) -> Any:
        def hook(_m: nn.Module, args: tuple[Any, ...]) -> None:
            if max_examples is not None and counts[n] >= max_examples:
                return
            x = args[0].detach().float()
            if max_examples is not None:
                x = x[: max_examples - counts[n]]
            kept[n].append(x.clone())
            counts[n] += int(x.shape[0])
        return hook

    handles = [modules[n].register_forward_pre_hook(hook_for(n)) for n in names]
    was_training = model.training
    model.eval()
    n_batches = 0
    try:
        with torch.no_grad():
            for i, batch in enumerate(batches):
                model(*_positional(batch, i))
                n_batches += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not n_batches:
        raise ConfigError("capture_inputs: batches must hold at least one batch, but got none")
    missing = [n for n in names if not kept[n]]
    if missing:
        raise ConfigError(f"capture_inputs: every named layer must run on the batches, but {missing} never did")
    return {n: torch.cat(kept[n], dim=0) for n in names}
