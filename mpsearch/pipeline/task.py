"""What a run measures: the loss that sensitivity differentiates and the metric the report shows.

A classifier (the digits demo, a user's model) is scored by top-1 accuracy; a language model (the
``gpt_tiny`` demo) by bits per byte of next-byte prediction, where lower is better. Everything
that reads a metric (frontier, baselines, QAT, report) asks the run's :class:`Task`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn

from mpsearch.errors import rule_error

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Task:
    """The loss and the metric of a run.

    Attributes:
        name: "classification", "language_model" or "regression".
        loss_fn: mean loss of a batch, ``loss_fn(outputs, targets)``.
        metric: the metric's name in reports ("accuracy", "bits_per_byte", "psnr_db").
        evaluate: ``evaluate(model, batches) -> float`` over ``(inputs, targets)`` batches.
        higher_is_better: True for accuracy, False for bits per byte.
        unit: "fraction" (reports print it in percent) or the unit reports print after it.
    """

    name: str
    loss_fn: LossFn
    metric: str
    evaluate: Callable[[nn.Module, Iterable[Any]], float]
    higher_is_better: bool
    unit: str

    def better(self, a: float, b: float) -> bool:
        """True when metric value ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b

    def describe(self) -> dict[str, Any]:
        """Plain data for the summary: name, metric, direction and unit."""
        return {"task": self.name, "metric": self.metric, "higher_is_better": self.higher_is_better,
                "unit": self.unit}


def _accuracy(model: nn.Module, batches: Iterable[Any]) -> float:
    from mpsearch.demo import evaluate

    return float(evaluate(model, batches))


def _bits_per_byte(model: nn.Module, batches: Iterable[Any]) -> float:
    from mpsearch.demo.lm import bits_per_byte

    return float(bits_per_byte(model, batches))


def _lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    from mpsearch.demo.lm import lm_loss

    return lm_loss(logits, targets)


def _psnr(model: nn.Module, batches: Iterable[Any]) -> float:
    from mpsearch.demo.images import psnr

    return float(psnr(model, batches))


CLASSIFICATION = Task("classification", nn.CrossEntropyLoss(), "accuracy", _accuracy, True, "fraction")
LANGUAGE_MODEL = Task("language_model", _lm_loss, "bits_per_byte", _bits_per_byte, False, "bits/byte")
# Image regression (the denoising demo): mean squared error, scored by PSNR over every pixel.
REGRESSION = Task("regression", nn.MSELoss(), "psnr_db", _psnr, True, "dB")

TASKS = {t.name: t for t in (CLASSIFICATION, LANGUAGE_MODEL, REGRESSION)}


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name lists the valid ones."""
    if name not in TASKS:
        raise rule_error("task", "name", f"one of {', '.join(TASKS)}", name)
    return TASKS[name]
