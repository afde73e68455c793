"""Accuracy-target mode on a recipe: the smallest plan within ``allocation.max_drop`` of float.

Each frontier point that the search probes is quantized (calibrated as every run calibrates)
and measured on the validation split; the chosen plan is then measured once on the test split,
and both drops are reported (the test split never takes part in the choice).
"""

from __future__ import annotations

from typing import Any

from mpsearch.allocation import TargetResult
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.pipeline import steps

#: Frontier budgets swept at least (binary search probes about log2 of the distinct points).
MIN_POINTS = 24


def target_step(prep: steps.Prepared, table: CostTable, max_drop: float | str | None = None,
                minimize: str | None = None) -> TargetResult:
    """:func:`mpsearch.allocation.allocate_for_drop` with the recipe's model, data, budgets and rules.

    ``max_drop`` / ``minimize`` override ``allocation.max_drop`` / ``allocation.minimize``; the
    recipe's budgets on other resources stay in force (one on ``minimize`` itself is dropped:
    the search minimizes it).
    """
    from mpsearch.allocation import allocate_for_drop
    from mpsearch.errors import ConfigError

    r = prep.recipe
    a = r.allocation
    drop = a.max_drop if max_drop is None else max_drop
    if drop is None:
        raise ConfigError(f"{r.path}: allocation.max_drop must be set (or --max-drop given) for accuracy-target "
                          f"mode, but got none")
    resource = minimize or a.minimize
    inputs = prep.inputs

    def on(batches: list[Any]):
        return lambda plan: steps.metric(prep, steps.quantize_plan(prep, plan), batches)

    others = [b for b in prep.budgets.entries if b.resource != resource]
    n_points = max(MIN_POINTS, a.pareto.n_points if a.pareto is not None else 0)
    return allocate_for_drop(table, drop, on(inputs.val), steps.metric(prep, inputs.model, inputs.val),
                             minimize=resource, higher_is_better=inputs.task.higher_is_better, n_points=n_points,
                             other_budgets=others, rules=prep.profile.rules, solver=a.solver, gap_rel=a.gap_rel,
                             evaluate_test=on(inputs.test), float_test_metric=steps.metric(prep, inputs.model, inputs.test))


def target_plan(result: TargetResult) -> BitPlan:
    """The chosen plan, with what was measured in its ``meta`` (see :class:`TargetResult`)."""
    result.plan.meta.update(float_val_metric=result.float_metric, target_evaluations=len(result.evaluated),
                            target_frontier_points=result.n_frontier, minimize=result.minimize)
    return result.plan
