"""The k best plans (no-good cuts) and picking among them by a real evaluation (#15, item 3).

The additive omega model ranks plans well but not perfectly: the second or fifth best plan by
omega may measure better. :func:`allocate_k_best` lists the ``k`` best feasible plans in order
of total omega; :func:`pick_by_evaluation` scores them with a user-given ``evaluate(plan) ->
metric`` (validation data) within an evaluation budget and keeps the best by the real metric.

Method: one PuLP model (the modelling layer) of the whole problem, without dominance pruning
(a dominated candidate can be in the second best plan), solved to a proven optimum (gap 0);
after each plan a no-good cut ``sum_g x[g, chosen_g] <= n_groups - 1`` forbids exactly that
assignment, and the model is solved again. HiGHS runs in-process through ``pulp.HiGHS`` when
highspy is installed, else CBC through PuLP (a subprocess per solve).
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from mpsearch.allocation.budgets import Budgets, resolve_budgets
from mpsearch.allocation.diagnose import _slack, infeasible_error
from mpsearch.allocation.feasible import absolute_limits, label
from mpsearch.allocation.pins import resolve_pins
from mpsearch.allocation.problem import Problem
from mpsearch.allocation.solvers._base import FEAS_TOL
from mpsearch.core.checks import check_bool, check_choice, check_int
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.core.profile import Rules
from mpsearch.errors import MpsearchError

#: Solvers for the k-best loop: "auto" is HiGHS in-process when highspy is installed, else CBC.
K_BEST_SOLVERS = ("auto", "highs", "cbc")


def allocate_k_best(table: CostTable, budgets: Budgets | Mapping[str, Any] | Iterable[Any] | None = None, k: int = 5,
                    *, pins: Mapping[str, Any] | None = None, rules: Rules | None = None,
                    relative: Mapping[str, float] | None = None, solver: str = "auto") -> list[BitPlan]:
    """The ``k`` best plans under ``budgets``, in ascending total omega (fewer if fewer exist).

    Each plan is proven optimal among the plans not listed before it (gap 0), so the list is
    exactly the first ``k`` feasible plans by omega; among plans of equal omega the order is the
    solver's. ``meta["rank"]`` is the 1-based position; only rank 1 has ``optimal=True``.

    Args:
        table, budgets, pins, rules, relative: as in :func:`mpsearch.allocation.allocate`.
        k: plans wanted (>= 1).
        solver: ``"auto"`` (HiGHS in-process if highspy is installed, else CBC), ``"highs"`` or ``"cbc"``.

    Raises:
        InfeasibleBudgetError: no plan meets the budgets.
    """
    check_int(k, "allocate_k_best", "k", min=1)
    check_choice(solver, "allocate_k_best", "solver", K_BEST_SOLVERS)
    engine = _engine(solver)
    parsed = resolve_budgets(budgets, table, relative=relative)
    pinned = resolve_pins(table, pins, rules)
    problem = Problem(table, "omega", parsed.resources, pinned, prune=False)
    limits = absolute_limits(parsed, problem.lo, problem.hi)
    labels = {b.resource: label(b, limits[b.resource]) for b in parsed.entries}
    values = np.array(list(limits.values()))
    # the same rounding allowance allocate gives a plan exactly at a budget
    scaled = problem.scale_limits(values + _slack(values)) if len(values) else values
    lp, x = _model(problem, scaled)
    import pulp

    plans: list[BitPlan] = []
    ptr = problem.group_ptr.tolist()
    while len(plans) < k:
        t0 = time.perf_counter()
        status = _solve(lp, engine)
        elapsed = time.perf_counter() - t0
        if status != pulp.constants.LpStatusOptimal:
            if status == pulp.constants.LpStatusInfeasible:
                break  # every feasible plan is listed
            raise MpsearchError(f"allocate_k_best: the solver must prove each plan optimal, but {engine} stopped "
                                f"with {pulp.LpStatus[status]!r} at rank {len(plans) + 1}")
        values_x = np.array([v.varValue or 0.0 for v in x])
        chosen = np.array([ptr[g] + int(np.argmax(values_x[ptr[g]:ptr[g + 1]])) for g in range(problem.n_groups)])
        rows = problem.table_rows(chosen)
        rank = len(plans) + 1
        plans.append(table.plan_from_rows(rows, solver=engine, status="optimal", optimal=rank == 1, gap=0.0 if rank == 1 else None,
                                          solve_time_s=elapsed, meta={"rank": rank, "budgets": limits, "k": k}))
        # no-good cut: this exact assignment (one variable per group) is never chosen again
        lp.addConstraint(pulp.lpSum(x[j] for j in chosen.tolist()) <= problem.n_groups - 1, name=f"nogood{rank}")
    if not plans:
        raise infeasible_error(table, limits, pinned, "cbc", labels)
    return plans


def pick_by_evaluation(plans: Sequence[BitPlan], evaluate: Callable[[BitPlan], float], max_evals: int | None = None,
                       higher_is_better: bool = True) -> tuple[BitPlan, list[float]]:
    """Evaluate the first ``max_evals`` plans (all if None) and return the best by the real metric.

    ``plans`` come in the order to spend the budget in (``allocate_k_best``: best omega first).
    Returns ``(best plan, metrics of the evaluated plans in order)``; the best plan's ``meta``
    gains ``metric`` and ``rank_by_metric`` (ties keep the earlier plan, i.e. the lower omega).
    """
    check_bool(higher_is_better, "pick_by_evaluation", "higher_is_better")
    if not plans:
        raise MpsearchError("pick_by_evaluation: plans must hold at least one plan, but got none")
    n = len(plans) if max_evals is None else check_int(max_evals, "pick_by_evaluation", "max_evals", min=1)
    metrics = [float(evaluate(p)) for p in list(plans)[:n]]
    sign = 1.0 if higher_is_better else -1.0
    best = max(range(len(metrics)), key=lambda i: (sign * metrics[i], -i))
    chosen = plans[best]
    chosen.meta.update(metric=metrics[best], picked_from=len(metrics))
    return chosen, metrics


def _engine(solver: str) -> str:
    if solver == "auto":
        return "highs" if importlib.util.find_spec("highspy") is not None else "cbc"
    return solver


def _model(problem: Problem, scaled_limits: np.ndarray) -> tuple[Any, list[Any]]:
    """PuLP model of the whole problem: binaries, one ``== 1`` row per group, one ``<=`` row per budget."""
    import pulp

    lp = pulp.LpProblem("k_best", pulp.LpMinimize)
    if hasattr(lp, "add_variable"):  # PuLP >= 3.3: the model owns its variables
        x = [lp.add_variable(f"x{j}", 0, 1, pulp.LpBinary) for j in range(problem.n_vars)]
    else:
        x = [pulp.LpVariable(f"x{j}", 0, 1, pulp.LpBinary) for j in range(problem.n_vars)]
    lp.setObjective(pulp.LpAffineExpression(zip(x, problem.cost.tolist())))
    ptr = problem.group_ptr.tolist()
    for g in range(problem.n_groups):
        lp.addConstraint(pulp.lpSum(x[ptr[g]:ptr[g + 1]]) == 1, name=f"g{g}")
    for r, (coef, limit) in enumerate(zip(problem.coef, np.asarray(scaled_limits, dtype=np.float64).tolist())):
        nz = np.nonzero(coef)[0]
        lp.addConstraint(pulp.LpAffineExpression(zip([x[j] for j in nz.tolist()], coef[nz].tolist())) <= limit,
                         name=f"b{r}")
    return lp, x


def _solve(lp: Any, engine: str) -> int:
    """Solve to a proven optimum (gap 0) with ``engine``; the PuLP status."""
    import pulp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if engine == "highs":
            solver = pulp.HiGHS(msg=False, gapRel=0.0, gapAbs=0.0, primal_feasibility_tolerance=FEAS_TOL,
                                mip_feasibility_tolerance=FEAS_TOL)
        else:  # the options CbcBackend uses, for the reasons given there
            solver = pulp.PULP_CBC_CMD(msg=False, gapRel=0.0, gapAbs=0.0,
                                       options=[f"primalTolerance {FEAS_TOL}", f"integerTolerance {FEAS_TOL}",
                                                "preprocess off", "increment 1e-12", f"dualTolerance {FEAS_TOL / 10}"])
        return lp.solve(solver)
