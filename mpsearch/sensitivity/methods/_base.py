"""Contract of a sensitivity method.

A method is a class with

* ``name``: the key in :data:`mpsearch.sensitivity.methods.METHODS` (``analyze(method=name)``);
* ``config_cls``: the frozen dataclass of its settings (``analyze(config=...)`` must be an
  instance of it; ``None`` means its defaults);
* ``run(ctx, config) -> Sensitivity``: fill a :class:`LayerSensitivity` for every layer of
  ``ctx.names``, keyed by module name, in that order, with ``n_params`` the number of weight
  elements, and put how it was measured (settings, counters, seconds) in ``meta``.

``run`` receives the model already in eval mode with layer weights requiring grad, and must
leave the model's parameters unchanged when it returns (also when it raises). It measures
the loss of the whole data set, ``sum_b (n_b/N) L_b`` (see ``data.py``), never an unweighted
mean of batch means. A method that needs second derivatives turns a failed double backward
into :class:`~mpsearch.errors.UnsupportedModelError` via ``double_backward.unsupported_error``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch

from mpsearch.core.types import Sensitivity
from mpsearch.sensitivity.data import Data, LossFn
from mpsearch.sensitivity.distributed import Comm


@dataclass
class Context:
    """Everything a method needs: the model, loss, data, layers and the process group."""

    model: torch.nn.Module
    loss_fn: LossFn
    data: Data
    names: Sequence[str]
    modules: Sequence[torch.nn.Module]
    comm: Comm


class Method(ABC):
    """One way to measure per-layer sensitivity (see the module docstring)."""

    name: ClassVar[str]
    config_cls: ClassVar[type]

    @abstractmethod
    def run(self, ctx: Context, config: Any) -> Sensitivity:
        """Measure every layer of ``ctx``; see the module docstring for the contract."""
