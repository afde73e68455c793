"""Can the budgets be met at all? Answered from the resources alone, before (or without) an allocation.

A budget alone is met exactly when it is at least its resource's smallest total over the
assignments that respect ties and pins (no solver). Several budgets together need one exact
ILP on the resources: the smallest total of the first budget's resource under the others.
Omega plays no part, so the check runs right after ``discover`` (on a resource table) and
costs one small solve, not an allocation.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from mpsearch.allocation.budgets import Budget, Budgets, resolve_budgets
from mpsearch.allocation.diagnose import _slack, infeasible_error, minimize_resource
from mpsearch.allocation.pins import resolve_pins
from mpsearch.allocation.problem import Problem
from mpsearch.core.cost_table import CostTable
from mpsearch.core.profile import Rules
from mpsearch.errors import InfeasibleBudgetError


def absolute_limits(budgets: Budgets, lo: np.ndarray, hi: np.ndarray) -> dict[str, float]:
    """Resource -> limit in resource units; ``lo``/``hi`` are each budget's smallest/largest total."""
    return {b.resource: b.absolute(float(low), float(high)) for b, low, high in zip(budgets.entries, lo, hi)}


def label(budget: Budget, limit: float) -> str:
    """``"size_bytes <= 1.2e+05"``, plus the relative form where it was given as one."""
    rel = f" ({budget.limit * 100:g}% of the way from its smallest to its largest total)" if budget.relative else ""
    return f"{budget.resource} <= {limit:.12g}{rel}"


def check_feasible(table: CostTable, budgets: Any, *, pins: Mapping[str, Any] | None = None,
                   rules: Rules | None = None, solver: str = "cbc", where: str = "budgets",
                   fix_subject: str | None = None, fix_alternative: str = "", joint: bool = True) -> dict[str, float]:
    """Raise :class:`InfeasibleBudgetError` if no plan of ``table`` meets ``budgets``; else their limits.

    Args:
        table: a cost table or a resource table (omega is not read).
        budgets: as :func:`mpsearch.allocation.resolve_budgets` takes them.
        pins, rules: fixed layers, as in :func:`mpsearch.allocation.allocate`.
        solver: the engine of the joint check.
        where: what the message names first (a file, ``--table``...).
        fix_subject: what the user raises (``"the --budget values"``); default "it" for one
            budget, "a budget" for several.
        fix_alternative: another remedy appended to the fix (``", or allow lower bit-widths ..."``).
        joint: also check the budgets together (one ILP when there are several); False checks
            each alone (no solver), for callers that meet joint conflicts later on their own.

    Returns:
        Resource -> absolute limit (relative budgets over the range that ties and pins leave).

    Raises:
        InfeasibleBudgetError: naming each budget that cannot be met and its smallest feasible
            value (also in ``error.smallest``).
    """
    budgets = resolve_budgets(budgets, table, where=f"{where}: budgets")
    if not budgets:
        return {}
    pinned = resolve_pins(table, pins, rules)
    problem = Problem(table, budgets.resources[0], budgets.resources, pinned)
    limits = absolute_limits(budgets, problem.lo, problem.hi)
    scope = " and pins" if pinned else ""
    for b, lo, slack in zip(budgets.entries, problem.lo, _slack(problem.lo)):
        if limits[b.resource] < lo - slack:
            raise InfeasibleBudgetError(
                f"{where}: budgets.{b.resource} must be >= {lo:.6g} (the smallest total any plan reaches with these "
                f"candidates{scope}), but got {b.written!r}; fix: raise {fix_subject or 'it'} to at least "
                f"{lo:.6g}{fix_alternative}", smallest={b.resource: float(lo)})
    if joint and len(limits) > 1 and not _jointly_feasible(table, limits, pinned, solver):
        labels = {b.resource: label(b, limits[b.resource]) for b in budgets.entries}
        raise infeasible_error(table, limits, pinned, solver, labels, where=where,
                               fix=f"; fix: raise {fix_subject or 'a budget'} to the smallest value named{fix_alternative}")
    return limits


def _jointly_feasible(table: CostTable, limits: Mapping[str, float], pins: Mapping[int, tuple[int, int]],
                      solver: str) -> bool:
    """Whether the smallest total of the first resource under the other limits meets its own limit."""
    first = next(iter(limits))
    others = {k: v for k, v in limits.items() if k != first}
    value, _ = minimize_resource(table, first, others, pins, solver)
    return value is not None and value <= limits[first] + float(_slack([limits[first]])[0])
