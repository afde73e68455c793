"""Calibration batches and the loss of the whole data set.

Every method works on the loss of the *whole* data set, ``L = sum_b (n_b / N) L_b``, where
``L_b`` is the mean loss of batch ``b`` (``loss_fn`` must reduce by mean) and ``n_b`` its
number of examples. Its Hessian is the same weighted average of the batch Hessians, so a
last, smaller batch counts for exactly its share of examples and no more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from mpsearch.errors import ConfigError

LossFn = Callable[[torch.Tensor, Any], torch.Tensor]


@dataclass(frozen=True)
class Batch:
    """One batch: model inputs (a tensor or a tuple of tensors), targets, example count."""

    inputs: Any
    targets: Any
    n_examples: int


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(o, device) for o in obj)
    return obj


def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for o in obj:
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


class Data:
    """The batches, moved to the model's device once, with their weights ``n_b / N``."""

    def __init__(self, batches: Iterable[Any], device: torch.device, where: str = "analyze") -> None:
        items: list[Batch] = []
        for i, b in enumerate(batches):
            if not isinstance(b, (tuple, list)) or len(b) != 2:
                raise ConfigError(f"{where}: batches[{i}] must be an (inputs, targets) pair, but got {type(b).__name__}")
            x, y = b
            t = _first_tensor(x)
            if t is None or t.dim() == 0:
                raise ConfigError(f"{where}: batches[{i}] inputs must hold a tensor with a batch dimension, but got {type(x).__name__}")
            items.append(Batch(_to(x, device), _to(y, device), int(t.shape[0])))
        if not items:
            raise ConfigError(f"{where}: batches must hold at least one batch, but got none")
        self.batches: Sequence[Batch] = items
        self.n_examples = sum(b.n_examples for b in items)
        #: weight of each batch's mean loss in the data set's mean loss
        self.weights = [b.n_examples / self.n_examples for b in items]

    def __len__(self) -> int:
        return len(self.batches)


def run_model(model: torch.nn.Module, inputs: Any) -> Any:
    """Call ``model`` on a tensor or unpack a tuple/list of inputs."""
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def batch_loss(model: torch.nn.Module, loss_fn: LossFn, batch: Batch, where: str = "analyze") -> torch.Tensor:
    """Mean loss of one batch; refuses a loss that is not a scalar."""
    loss = loss_fn(run_model(model, batch.inputs), batch.targets)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ConfigError(f"{where}: loss_fn must return a scalar tensor (the batch's mean loss), but got {shape}")
    return loss
