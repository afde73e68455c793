"""Why budgets fail: the smallest value each budget can take while the others hold.

For budget ``b`` this is itself a small ILP: minimize the total of ``b``'s resource subject to
every other budget (same ties and pins). If the budgets cannot all hold, each budget's limit
is below that value (or the others already conflict, reported as None): were some limit at or
above it, the minimizer would meet every budget.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mpsearch.allocation.problem import Problem
from mpsearch.allocation.exact import ExactSolver
from mpsearch.allocation.status import INFEASIBLE, OPTIMAL
from mpsearch.core.cost_table import CostTable
from mpsearch.errors import InfeasibleBudgetError, MpsearchError


def minimize_resource(table: CostTable, resource: str, limits: Mapping[str, float],
                      pins: Mapping[int, tuple[int, int]], solver: str,
                      time_limit_s: float | None = None) -> tuple[float | None, np.ndarray | None]:
    """Smallest total of ``resource`` under ``limits`` (None if they cannot hold) and its rows."""
    names = list(limits)
    problem = Problem(table, resource, names, pins)
    values = np.array([limits[n] for n in names])
    if np.any(values < problem.lo - _slack(problem.lo)):  # one budget alone is already out of reach
        return None, None
    if not names:  # separable: each group at its cheapest candidate
        chosen = problem.group_ptr[:-1] + np.array(
            [np.argmin(problem.cost[a:b]) for a, b in zip(problem.group_ptr[:-1], problem.group_ptr[1:])], dtype=np.int64)
    else:
        out = ExactSolver(problem, solver).solve(problem.scale_limits(values), time_limit_s, 0.0)
        if out.status == INFEASIBLE:
            return None, None
        if out.chosen is None or out.status != OPTIMAL:
            raise MpsearchError(f"allocate: the smallest {resource} under the other budgets must be solved to "
                                f"optimality, but the solver stopped with {out.raw!r}")
        chosen = out.chosen
    rows = problem.table_rows(chosen)
    return table.totals(rows)[resource], rows


def infeasible_error(table: CostTable, limits: Mapping[str, float], pins: Mapping[int, tuple[int, int]],
                     solver: str, labels: Mapping[str, str] | None = None, where: str = "allocate",
                     fix: str = "") -> InfeasibleBudgetError:
    """Build the error naming each budget that cannot be met and its smallest feasible value.

    ``where`` starts the message (a file, a command); ``fix`` ends it (how to change the budgets).
    """
    smallest: dict[str, float | None] = {}
    parts = []
    for name, limit in limits.items():
        others = {k: v for k, v in limits.items() if k != name}
        value, _ = minimize_resource(table, name, others, pins, solver)
        smallest[name] = value
        label = (labels or {}).get(name, f"{name} <= {limit:.12g}")
        if value is None:
            parts.append(f"{label} cannot be met: the other budgets already conflict on their own")
        elif value > limit:
            under = " under the other budgets" if others else ""
            parts.append(f"{label} cannot be met: the smallest {name}{under} is {value:.12g}")
    pinned = " with the pinned layers" if pins else ""
    return InfeasibleBudgetError(f"{where}: budgets must be reachable{pinned}, but " + "; ".join(parts) + fix, smallest)


def _slack(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Rounding slack when comparing a limit with a sum of floats."""
    return 1e-9 * np.maximum(np.abs(np.asarray(values, dtype=np.float64)), 1.0)
