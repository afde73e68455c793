"""The steps of a recipe run, each a thin call of a public verb; ``run.py`` strings them together.

Kept separate so the CLI's smaller commands (``analyze``, ``allocate``, ``search``,
``validate``) reuse exactly the steps ``run`` uses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from torch import nn

from mpsearch.allocation import Budgets  # numpy only: pulp loads lazily
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.core.profile import HardwareProfile
from mpsearch.core.types import Layer, Sensitivity
from mpsearch.errors import MpsearchError
from mpsearch.pipeline.inputs import Inputs, load_inputs
from mpsearch.recipe import Recipe, sensitivity_config
from mpsearch.report.plain import plain, table_from_dict, table_to_dict  # noqa: F401  # the commands use them through steps
from mpsearch.report.progress import Progress

#: Keys of a plan's ``meta`` that hold wall times; dropped from plan.yaml so reruns match byte for byte.
_TIME_KEYS = ("time_s", "_time_s", "wall_time_s")


@dataclass
class Prepared:
    """What every command needs before the heavy work: checked recipe, model, layers, resources.

    ``budgets`` are resolved against ``resources`` (every limit a number or a relative
    fraction) and known to be feasible; the steps below pass them on as they are.
    """

    recipe: Recipe
    profile: HardwareProfile
    inputs: Inputs
    layers: list[Layer]
    resources: CostTable
    budgets: Budgets
    timings_s: dict[str, float] = field(default_factory=dict)


def prepare(recipe: Recipe, budgets: Budgets | Mapping[str, Any] | None = None, inputs: Inputs | None = None) -> Prepared:
    """Load profile, model and data; discover layers; check the budgets against the resources.

    The demo model trains here on first use (seconds). Everything later is the heavy part.

    Args:
        recipe: a checked recipe.
        budgets: override of ``recipe.budgets`` (the CLI's ``--budget`` flags, parsed).
        inputs: model and batches to use instead of the ones the recipe names (benchmarks
            that repeat a recipe over data splits).

    Raises:
        InfeasibleBudgetError: no plan meets the budgets (before any heavy work); the message
            names the recipe, each budget's smallest value and the fix.
    """
    from mpsearch.allocation import check_feasible, resolve_budgets
    from mpsearch.hardware import load_profile, resource_table
    from mpsearch.model import discover

    t0 = time.perf_counter()
    profile = load_profile(recipe.hardware.profile)
    inputs = load_inputs(recipe) if inputs is None else inputs
    t1 = time.perf_counter()
    layers = discover(inputs.model, inputs.example_inputs)
    hw = recipe.hardware
    resources = resource_table(layers, profile, hw.w_bits, hw.a_bits, batch=hw.batch, formats=hw.formats)
    resolved = resolve_budgets(recipe.budgets if budgets is None else budgets, resources, where=f"{recipe.path}: budgets")
    hint = (f", or allow lower bit-widths in hardware.w_bits / hardware.a_bits (now "
            f"{list(hw.w_bits) if hw.w_bits else 'all the profile runs'})")
    check_feasible(resources, resolved, rules=profile.rules, where=recipe.path, fix_alternative=hint)
    return Prepared(recipe, profile, inputs, list(layers), resources, resolved,
                    {"load_s": t1 - t0, "discover_s": time.perf_counter() - t1})


def sensitivity_step(prep: Prepared, bars: Progress) -> Sensitivity:
    """``analyze`` on ``sensitivity.n_batches`` train batches, with a progress bar.

    With several candidate activation widths the Hessian method also estimates activation
    traces unless the recipe says otherwise (see :func:`mpsearch.recipe.sensitivity_config`).
    The result is cached in ``<cache root>/sensitivity`` (:mod:`mpsearch.sensitivity.cache`):
    a rerun, or a resumed search, on the same model, data and settings does not measure again.
    """
    from mpsearch.sensitivity import analyze
    from mpsearch.sensitivity.cache import default_cache_dir

    task = bars.add(f"sensitivity ({prep.recipe.sensitivity.method})")

    def on_progress(event: dict[str, Any]) -> None:
        info = " ".join(f"{k}={v}" for k, v in event.items() if k in ("stage", "n_probes", "active_layers"))
        bars.update(task, completed=event.get("n_probes", event.get("round", 0)), info=info)

    a_bits = sorted({c.a_bits for cs in prep.resources.candidates for c in cs})
    config = sensitivity_config(prep.recipe, progress=on_progress, activation_bits=a_bits)
    batches = prep.inputs.train[: prep.recipe.sensitivity.n_batches]
    sens = analyze(prep.inputs.model, prep.inputs.task.loss_fn, batches, method=prep.recipe.sensitivity.method,
                   config=config, layers=prep.layers, cache_dir=default_cache_dir())
    bars.finish(task, info="done")
    return sens


def table_step(prep: Prepared, sens: Sensitivity) -> CostTable:
    """``cost_table`` with the recipe's bits, calibrated on the first calibration batches."""
    from mpsearch.sensitivity import cost_table

    r = prep.recipe
    return cost_table(prep.inputs.model, prep.layers, sens, prep.profile, w_bits=r.hardware.w_bits,
                      a_bits=r.hardware.a_bits, calib_batches=prep.inputs.train[: r.data.calib_batches],
                      batch=r.hardware.batch, formats=r.hardware.formats, methods=r.hardware.methods)


def choose_plan(prep: Prepared, table: CostTable, bars: Progress, *, method: str | None = None,
                n_trials: int | None = None, options: Mapping[str, Any] | None = None) -> BitPlan:
    """``allocate`` (ILP) or ``search`` (optuna / rl) under the recipe's budgets.

    :func:`prepare` checked the budgets on the same resources with the profile's rules, so the
    ILP cannot find them infeasible (and the explorers, which pin nothing, neither).
    """
    r = prep.recipe
    method = method or r.allocation.method
    if method == "ilp":
        from mpsearch.allocation import allocate

        return allocate(table, prep.budgets, solver=r.allocation.solver, rules=prep.profile.rules,
                        gap_rel=r.allocation.gap_rel)
    from mpsearch.explorers import search

    total = n_trials or r.allocation.n_trials
    task = bars.add(f"search ({method})", total=total)
    result = search(table, explorer=method, budgets=prep.budgets, n_trials=total, seed=r.seed,
                    progress=lambda _e: bars.update(task, advance=1), **dict(options or {}))
    bars.finish(task)
    if result.best is None:
        raise MpsearchError(f"{r.path}: allocation.method {method!r} must find a plan, but all "
                            f"{result.n_evaluations} trials failed")
    return result.best


def stable_plan(plan: BitPlan) -> BitPlan:
    """The plan without wall times, so the same inputs give the same plan.yaml bytes."""
    from dataclasses import replace

    meta = {k: v for k, v in plan.meta.items() if not any(k.endswith(s) for s in _TIME_KEYS)}
    return replace(plan, solve_time_s=None, meta=meta)


def quantize_plan(prep: Prepared, plan: BitPlan) -> nn.Module:
    """The fake-quant model of ``plan``, calibrated on ``data.calib_batches`` train batches."""
    from mpsearch.quant import quantize

    return quantize(prep.inputs.model, plan, prep.inputs.train[: prep.recipe.data.calib_batches], profile=prep.profile)


def metric(prep: Prepared, model: nn.Module, batches: list[Any]) -> float:
    """The run's metric over ``(inputs, targets)`` batches: top-1 accuracy (fraction) of a
    classifier, bits per byte of a language model (see :mod:`mpsearch.pipeline.task`)."""
    return prep.inputs.task.evaluate(model, batches)


def finetune_step(prep: Prepared, qmodel: nn.Module, bars: Progress, label: str = "QAT") -> dict[str, Any]:
    """QAT of ``qmodel`` in place as the recipe's ``finetune`` section says (KD from the float model).

    The train split is re-dealt every epoch in an order drawn from ``finetune.seed`` (default:
    the recipe's ``seed``), so fine-tuning varies with that seed while the plan does not.
    """
    from mpsearch.qat import DistillConfig, FinetuneConfig, finetune_

    spec = prep.recipe.finetune
    if spec is None or spec.epochs == 0:
        return {}
    task = bars.add(f"fine-tune {label}", total=spec.epochs)
    seed = prep.recipe.seed if spec.seed is None else spec.seed
    config = FinetuneConfig(epochs=spec.epochs, lr=spec.lr, seed=seed, batch_size=spec.batch_size,
                            progress=lambda e: bars.update(task, completed=e["epoch"], info=f"loss {e['loss']:.4f}"))
    distill = None
    if spec.distill is not None:
        distill = DistillConfig(prep.inputs.model, spec.distill.temperature, spec.distill.alpha)
    return finetune_(qmodel, prep.inputs.train, config, distill)


def integer_step(prep: Prepared, qmodel: nn.Module, bars: Progress, plan: BitPlan | None = None) -> tuple[Any, Any]:
    """``to_integer`` then ``validate`` on the validation split; returns ``(imodel, report)``.

    The program is integer-only when the profile is and the plan asks for nothing else: a plan
    with weight-only layers (``a_bits`` 16, activations in float) or per-token W8A8 layers
    (``w8a8t``: a float max per row at run time) runs LayerNorm, softmax and the rest as
    declared float islands, which ``validate`` lists.
    """
    from mpsearch.execution import IntegerConfig, to_integer, validate

    task = bars.add("integer validation", total=2)
    # weight-only layers read float activations; per-token layers need a float max per row
    float_by_plan = plan is not None and any(b.a_bits == 16 or b.a_mode == "dynamic_per_token"
                                             for b in plan.layers.values())
    config = IntegerConfig(integer_only=bool(prep.profile.capabilities.integer_only) and not float_by_plan)
    imodel = to_integer(qmodel, prep.inputs.example_inputs, config)
    bars.update(task, completed=1, info="converted")
    report = validate(imodel, qmodel, prep.inputs.split(prep.recipe.validation.split), timing_repeats=1)
    bars.finish(task, info=f"agreement {100 * report.top1_agreement:.2f}%")
    return imodel, report
