"""pareto(): the frontier of total omega against one resource, one model for every point."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from mpsearch.allocation.allocate import DEFAULT_GAP_REL, plan_from_outcome, solve_meta
from mpsearch.allocation.budgets import Budgets, check_resources, resolve_budgets
from mpsearch.allocation.diagnose import _slack, infeasible_error, minimize_resource
from mpsearch.allocation.feasible import absolute_limits, label
from mpsearch.allocation.exact import ExactSolver
from mpsearch.allocation.pins import resolve_pins
from mpsearch.allocation.problem import Problem
from mpsearch.allocation.solvers import get_backend
from mpsearch.allocation.status import INFEASIBLE
from mpsearch.core.checks import check_int, check_type
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.core.profile import Rules
from mpsearch.errors import ConfigError


@dataclass(frozen=True)
class ParetoFront:
    """Plans that trade total omega against one resource, sorted by that resource.

    Attributes:
        resource: the swept resource.
        points: distinct, non-dominated plans, ascending in ``resource`` (descending omega).
        budgets: the other budgets held fixed (absolute units).
    """

    resource: str
    points: tuple[BitPlan, ...]
    budgets: Mapping[str, float]

    def __len__(self) -> int:
        return len(self.points)

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per point (for CSV/JSON): budget, objective, totals, status, bits."""
        out = []
        for p in self.points:
            rec: dict[str, Any] = {f"budget_{self.resource}": p.meta.get("budgets", {}).get(self.resource),
                                   "omega": p.objective}
            rec.update(p.totals)
            rec.update(status=p.status, optimal=p.optimal,
                       bits=" ".join(f"{n}:{b.key}" for n, b in p.layers.items()))
            out.append(rec)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` reads back exactly."""
        return {"resource": self.resource, "budgets": dict(self.budgets), "points": [p.to_dict() for p in self.points]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "pareto") -> "ParetoFront":
        from mpsearch.core.io import check_keys

        check_keys(data, ("resource", "budgets", "points"), where, required=("resource", "points"))
        points = tuple(BitPlan.from_dict(p, f"{where}: points[{i}]") for i, p in enumerate(data["points"]))
        return cls(str(data["resource"]), points, {str(k): float(v) for k, v in (data.get("budgets") or {}).items()})


def pareto(table: CostTable, resource: str, n_points: int = 20,
           other_budgets: Budgets | Mapping[str, Any] | Iterable[Any] | None = None, *,
           relative: Mapping[str, float] | None = None, pins: Mapping[str, Any] | None = None,
           rules: Rules | None = None, solver: str = "cbc", time_limit_s: float | None = None,
           gap_rel: float = DEFAULT_GAP_REL) -> ParetoFront:
    """Sweep the budget on ``resource`` over ``n_points`` values and keep the distinct optima.

    The sweep runs from the smallest total of ``resource`` that the other budgets allow
    (itself an exact ILP) to the total of the omega-optimal plan with ``resource`` free
    (beyond it the frontier is flat), evenly spaced. Each point is solved as in
    :func:`allocate` (LP bound, incumbent, reduced-cost fixing, MIP on what is left); one LP
    model serves every point (only the swept row's bound changes, so it re-solves from the
    previous basis), and each point starts from the previous plan (still feasible, as the
    limits grow).

    Args:
        table: the cost table.
        resource: the resource to sweep (``size_bytes``, ``bops``, ``latency_ms``...).
        n_points: budgets tried (>= 2); identical and dominated plans are merged.
        other_budgets, relative: budgets held fixed, as in :func:`allocate`.
        pins, rules, solver, gap_rel: as in :func:`allocate`.
        time_limit_s: limit per point.

    Returns:
        A :class:`ParetoFront` sorted by ``resource``.
    """
    check_type(table, CostTable, "pareto", "table", "a CostTable (from mpsearch.cost_table or CostTable.from_records)")
    check_type(resource, str, "pareto", "resource", "a resource name such as 'size_bytes'")
    check_int(n_points, "pareto", "n_points", min=2)
    check_resources(table, [resource])
    others = resolve_budgets(other_budgets, table, relative=relative, where="other_budgets")
    if resource in others:
        raise ConfigError(f"pareto: other_budgets must not budget the swept resource {resource!r}, but it does")
    pinned = resolve_pins(table, pins, rules)
    get_backend(solver)  # an unknown solver fails before any work
    t0 = time.perf_counter()
    problem = Problem(table, "omega", [resource, *others.resources], pinned)
    limits = absolute_limits(others, problem.lo[1:], problem.hi[1:])
    labels = {b.resource: label(b, limits[b.resource]) for b in others.entries}
    values = np.array(list(limits.values()))
    if np.any(values < problem.lo[1:] - _slack(problem.lo[1:])):
        raise infeasible_error(table, limits, pinned, solver, labels)
    lo, _ = minimize_resource(table, resource, limits, pinned, solver, time_limit_s)
    if lo is None:
        raise infeasible_error(table, limits, pinned, solver, labels)
    # with a budget held beside the swept one (two rows: LP gaps of 2-50 %, ~1000 node LPs a sweep) the
    # compiled search where numba is installed; a one-row sweep closes in a few HiGHS nodes a point and
    # would only pay numba's start-up (and its first compile: ~20 s on an empty cache)
    exact = ExactSolver(problem, solver, fast=len(others.resources) > 0)
    top = float(problem.hi[0]) + float(_slack([problem.hi[0]])[0])  # resource effectively free
    free = exact.solve(problem.scale_limits([top, *values]), time_limit_s, gap_rel)
    free_meta = solve_meta(exact)
    hi = float(table.totals(problem.table_rows(free.chosen))[resource]) if free.chosen is not None else float(problem.hi[0])
    build_time_s = time.perf_counter() - t0
    grid = np.linspace(lo, max(lo, hi), n_points)
    grid[0] = lo  # exactly reachable: lo is the total of an assignment
    plans: list[BitPlan] = []
    start = None
    for v in grid:
        scaled = problem.scale_limits([v + _slack([v])[0], *values])
        out = free if v >= hi else exact.solve(scaled, time_limit_s, gap_rel, start)
        if out.status == INFEASIBLE or out.chosen is None:
            continue  # only possible by rounding at the lowest point; its neighbour covers it
        start = out.chosen
        meta = {"budgets": {resource: float(v), **limits}, "gap_rel": float(gap_rel),
                "time_limit_s": time_limit_s, "sweep_build_time_s": build_time_s,
                "n_vars": int(problem.n_vars), "n_candidates": int(problem.n_candidates), **(free_meta if out is free else solve_meta(exact))}
        plans.append(plan_from_outcome(problem, out, solver, meta))
    return ParetoFront(resource, _frontier(plans, resource), limits)


def _frontier(plans: list[BitPlan], resource: str) -> tuple[BitPlan, ...]:
    """Distinct assignments, non-dominated on (resource, omega), ascending in resource."""
    seen: dict[tuple[str, ...], BitPlan] = {}
    for p in plans:  # first (smallest-budget) occurrence of each assignment
        seen.setdefault(tuple(b.key for b in p.layers.values()), p)
    ordered = sorted(seen.values(), key=lambda p: (p.totals[resource], p.objective))
    out: list[BitPlan] = []
    for p in ordered:  # ascending resource: keep a point only if it lowers omega
        if not out or p.objective < out[-1].objective:
            out.append(p)
    return tuple(out)
