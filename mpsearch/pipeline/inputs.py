"""The model and batches a recipe names: a demo model on digits, or user import paths.

User contract (import paths in a recipe):

* ``model: "package.module:function"`` - ``function(**model_kwargs)`` returns a trained
  ``nn.Module`` mapping a batch of inputs to logits.
* ``data.source: "package.module:function"`` - ``function()`` returns a mapping (or an object
  with attributes) ``train``, ``val``, ``test``: re-iterable collections of ``(inputs, labels)``
  batches (lists or DataLoaders).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mpsearch.errors import ConfigError
from mpsearch.pipeline.task import CLASSIFICATION, LANGUAGE_MODEL, Task
from mpsearch.recipe import Recipe, import_object, is_import_path


@dataclass
class Inputs:
    """What the pipeline runs on.

    Attributes:
        model: the float model (eval mode).
        train / val / test: lists of ``(inputs, labels)`` batches.
        example_inputs: a tuple of input tensors (two examples) for tracing.
        info: facts about where they came from (demo training record, ...).
        task: the loss sensitivity differentiates and the metric reports show.
    """

    model: nn.Module
    train: list[Any]
    val: list[Any]
    test: list[Any]
    example_inputs: tuple[torch.Tensor, ...]
    info: dict[str, Any] = field(default_factory=dict)
    task: Task = CLASSIFICATION

    def split(self, name: str) -> list[Any]:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def digits_inputs(recipe: Recipe, model: nn.Module, splits: Any, info: dict[str, Any] | None = None) -> Inputs:
    """:class:`Inputs` of a model trained on digits ``splits`` (a ``mpsearch.demo.DigitsSplits``).

    Train batches hold ``data.batch_size`` images in split order; validation and test batches 512.
    """
    from mpsearch.demo import batches

    bs = recipe.data.batch_size
    model.eval()
    return Inputs(model=model, train=list(batches(splits.train, bs)), val=list(batches(splits.val, 512)),
                  test=list(batches(splits.test, 512)), example_inputs=splits.example_inputs(2), info=dict(info or {}))


def _demo_inputs(recipe: Recipe) -> Inputs:
    from mpsearch.demo import load_demo_run

    run = load_demo_run(recipe.model)
    info = {"demo": {k: run.info.get(k) for k in ("name", "val_accuracy", "test_accuracy", "train_time_s", "n_params")},
            "from_cache": run.from_cache, "checkpoint": str(run.path)}
    return digits_inputs(recipe, run.model, run.splits, info)


def _imported_inputs(recipe: Recipe) -> Inputs:
    where = recipe.path
    model = import_object(recipe.model, where, "model")(**recipe.model_kwargs)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where}: model must return a torch.nn.Module, but {recipe.model} returned "
                          f"{type(model).__name__}")
    data = import_object(recipe.data.source, where, "data.source")()
    splits = {}
    for name in ("train", "val", "test"):
        part = data.get(name) if isinstance(data, dict) else getattr(data, name, None)
        if part is None:
            raise ConfigError(f"{where}: data.source must return train, val and test batches, but "
                              f"{recipe.data.source} gave no {name!r}")
        splits[name] = list(part)
        if not splits[name]:
            raise ConfigError(f"{where}: data.source split {name!r} must hold batches, but it is empty")
    x0 = splits["train"][0][0]
    example = tuple(x0[:2]) if isinstance(x0, (tuple, list)) else (x0[:2],)
    model.eval()
    return Inputs(model=model, train=splits["train"], val=splits["val"], test=splits["test"],
                  example_inputs=example,
                  info={"model": recipe.model, "data": recipe.data.source})


#: Windows of the LM demo's validation and test text scored per evaluation (each 128 bytes):
#: 256 windows = 32 768 next-byte predictions, ~2 s a model on one core; the frontier scores a dozen.
LM_EVAL_WINDOWS = 256
#: Random training windows the LM pipeline draws (sensitivity, calibration and QAT read them).
LM_TRAIN_BATCHES = 64


def _lm_inputs(recipe: Recipe) -> Inputs:
    """The demo LM on the standard library's text: seeded random train windows, fixed eval windows."""
    from mpsearch.demo import load_demo_lm_run, text_batches

    run = load_demo_lm_run(recipe.model)
    context = run.model.config.context
    bs = recipe.data.batch_size
    n_eval = LM_EVAL_WINDOWS * context + 1  # the first LM_EVAL_WINDOWS non-overlapping windows
    train = list(text_batches(run.splits.train, context, bs, n_batches=LM_TRAIN_BATCHES, seed=recipe.seed))
    val = list(text_batches(run.splits.val[:n_eval], context, 64))
    test = list(text_batches(run.splits.test[:n_eval], context, 64))
    info = {"demo": {k: run.info.get(k) for k in ("name", "val_bits_per_byte", "test_bits_per_byte",
                                                   "train_time_s", "n_params")},
            "from_cache": run.from_cache, "checkpoint": str(run.path),
            "eval_windows": LM_EVAL_WINDOWS, "context": context}
    run.model.eval()
    return Inputs(model=run.model, train=train, val=val, test=test,
                  example_inputs=run.splits.example_inputs(2, context), info=info, task=LANGUAGE_MODEL)


def load_inputs(recipe: Recipe) -> Inputs:
    """The model and batches of ``recipe`` (a demo model trains on first use: seconds, minutes for an LM).

    With ``data.calibration: distilled`` the train batches are replaced by :func:`distilled_inputs`.
    """
    if is_import_path(recipe.model):
        inputs = _imported_inputs(recipe)
    elif recipe.data.source == "stdlib_text":
        inputs = _lm_inputs(recipe)
    else:
        inputs = _demo_inputs(recipe)
    return distilled_inputs(recipe, inputs) if recipe.data.calibration == "distilled" else inputs


def distilled_inputs(recipe: Recipe, inputs: Inputs) -> Inputs:
    """``inputs`` with train batches distilled from the model's BatchNorm statistics (ZeroQ).

    As many batches of ``data.batch_size`` as sensitivity and calibration read
    (``max(data.calib_batches, sensitivity.n_batches)``), each distilled for ``data.distill_iters``
    Adam steps (seed: the recipe's); labels are the float model's predictions. Validation and
    test batches stay real: they measure the result.

    Raises:
        UnsupportedModelError: the model has no BatchNorm (naming the recipe file).
    """
    import time

    from mpsearch.errors import UnsupportedModelError
    from mpsearch.quant.distill import DistillConfig, distill_data

    if len(inputs.example_inputs) != 1:
        raise ConfigError(f"{recipe.path}: data.calibration 'distilled' needs a model with one input tensor, but "
                          f"this one takes {len(inputs.example_inputs)}")
    n_batches = max(recipe.data.calib_batches, recipe.sensitivity.n_batches)
    shape = tuple(int(d) for d in inputs.example_inputs[0].shape[1:])
    config = DistillConfig(n_iter=recipe.data.distill_iters, batch_size=recipe.data.batch_size, seed=recipe.seed)
    start = time.perf_counter()
    try:
        x = distill_data(inputs.model, n_batches * recipe.data.batch_size, shape, config)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{recipe.path}: data.calibration 'distilled': {exc}") from None
    with torch.no_grad():
        labels = inputs.model(x).argmax(-1)
    bs = recipe.data.batch_size
    train = [(x[i:i + bs], labels[i:i + bs]) for i in range(0, len(x), bs)]
    info = dict(inputs.info, calibration="distilled", distilled_examples=int(len(x)),
                distill_time_s=round(time.perf_counter() - start, 3))
    return Inputs(model=inputs.model, train=train, val=inputs.val, test=inputs.test,
                  example_inputs=inputs.example_inputs, info=info, task=inputs.task)
