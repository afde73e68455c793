"""allocate(): the exact ILP over per-layer candidates under any number of budgets."""

from __future__ import annotations

import math
import time
from typing import Any, Iterable, Mapping

import numpy as np

from mpsearch.allocation.budgets import Budgets, resolve_budgets

#: Relative optimality gap at which allocate and pareto stop (see ``allocate``'s ``gap_rel``).
DEFAULT_GAP_REL = 1e-4
#: The rule every ``gap_rel`` (argument, recipe key, CLI flag) must follow, in words.
GAP_REL_RULE = "a number in [0, 1) (0 proves the optimum)"
from mpsearch.allocation.diagnose import _slack, infeasible_error
from mpsearch.allocation.feasible import absolute_limits, label
from mpsearch.allocation.pins import resolve_pins
from mpsearch.allocation.exact import ExactSolver
from mpsearch.allocation.problem import Problem
from mpsearch.allocation.solvers import get_backend
from mpsearch.allocation.status import INFEASIBLE, OPTIMAL, SolverOutcome
from mpsearch.core.checks import check_number, check_type
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.core.profile import Rules
from mpsearch.errors import MpsearchError


def allocate(table: CostTable, budgets: Budgets | Mapping[str, Any] | Iterable[Any] | None = None,
             pins: Mapping[str, Any] | None = None, solver: str = "cbc", time_limit_s: float | None = None,
             *, relative: Mapping[str, float] | None = None, rules: Rules | None = None,
             gap_rel: float = DEFAULT_GAP_REL, msg: bool = False, reduce: bool = True) -> BitPlan:
    """Choose one candidate per layer minimizing total omega under every budget at once.

    Binary one-hot variables per layer x candidate (one set per tie group, with omega and
    resources summed over the group), one ``<=`` row per budget; dominated candidates are
    dropped first (exact, see :mod:`mpsearch.allocation.problem`). The LP relaxation then gives
    a bound and an incumbent, reduced-cost fixing removes every candidate that cannot beat the
    incumbent (exact, see :mod:`mpsearch.allocation.reduce`), and ``solver`` proves the optimum
    on the few layers left free (often none: the incumbent is then proven optimal directly).

    Args:
        table: the cost table (``CostTable.from_records`` builds one from plain dicts).
        budgets: ``{"size_bytes": 120_000, "latency_ms": "50%", "bops": "uniform:w4a8"}``, a list
            of specs (``"bops=2.5G"``, ``("latency_ms", 2.5)``, :class:`Budget`) or a
            :class:`Budgets`; read once by :func:`mpsearch.allocation.resolve_budgets`.
        pins: layer name -> candidate (``"w8a8"``, ``(8, 8)``, ``LayerBits``): fixed layers.
        solver: ``"cbc"`` (bundled with PuLP) or ``"highs"`` (needs ``highspy``).
        time_limit_s: stop after this many seconds and return the best plan found
            (``status="time_limit"``, ``optimal=False``).
        relative: resource -> fraction in [0, 1]: the limit is ``lo + f * (hi - lo)`` where
            ``lo``/``hi`` are the smallest/largest totals of that resource over assignments
            that respect ties and pins (the other budgets are not taken into account).
        rules: a profile's placement rules; first/last layer become pins (explicit pins win).
        gap_rel: stop once the plan is proven within this relative gap of the optimum
            (``(objective - lower bound) / objective``). The default, 1e-4, is the default of
            Gurobi, CPLEX and HiGHS; it is ~100x below the statistical error of an omega total
            built from Hessian traces (see docs/BENCHMARKS.md) and keeps 1000-layer solves
            under a second. ``0`` proves the optimum (``status="optimal"``), which can take
            minutes on thousands of layers. A plan not proven optimal has
            ``status="within_gap"``, ``optimal=False`` and its proven ``gap``.
        msg: let the solver print its log.
        reduce: False skips the LP and fixing and gives the whole ILP to ``solver`` (same
            optimum, slower; for checking).

    Returns:
        A :class:`BitPlan` with the chosen bits, totals of every resource, objective (total
        omega), solver (of the final MIP), status, optimal, gap, solve_time_s (LP + fixing +
        MIP) and ``meta`` (budgets in absolute units, relative fractions, pins, build time,
        model size, ``lp`` engine, time split and variables left after fixing).

    Raises:
        InfeasibleBudgetError: no assignment meets the budgets; names each budget and the
            smallest value it can take under the others (also in ``error.smallest``).
        UnknownNameError: a budget names a resource the table lacks, or an unknown solver/layer.
        ConfigError: a malformed budget, or a pin to a candidate the layer lacks.
    """
    check_type(table, CostTable, "allocate", "table", "a CostTable (from mpsearch.cost_table or CostTable.from_records)")
    t_start = time.perf_counter()
    parsed = resolve_budgets(budgets, table, relative=relative)
    check_gap_rel(gap_rel)
    check_number(time_limit_s, "allocate", "time_limit_s", min=0, min_exclusive=True, finite=False, allow_none=True,
                 rule="a positive number of seconds or None")
    get_backend(solver)  # an unknown solver fails before any work
    pinned = resolve_pins(table, pins, rules)
    problem = Problem(table, "omega", parsed.resources, pinned)
    limits = absolute_limits(parsed, problem.lo, problem.hi)
    labels = {b.resource: label(b, limits[b.resource]) for b in parsed.entries}
    values = np.array(list(limits.values()))
    if np.any(values < problem.lo - _slack(problem.lo)):  # out of reach even alone: skip the solve
        raise infeasible_error(table, limits, pinned, solver, labels)
    exact = ExactSolver(problem, solver, msg=msg, reduce=reduce)
    build_time_s = time.perf_counter() - t_start
    outcome = exact.solve(problem.scale_limits(values), time_limit_s, float(gap_rel))
    if outcome.status == INFEASIBLE:
        raise infeasible_error(table, limits, pinned, solver, labels)
    meta = {
        "budgets": limits,
        "relative": {b.resource: b.limit for b in parsed.entries if b.relative},
        "pins": {table.layers[i]: key for i, key in pinned.items()},
        "gap_rel": float(gap_rel),
        "time_limit_s": None if time_limit_s is None else float(time_limit_s),
        "build_time_s": build_time_s,
        "n_vars": int(problem.n_vars),
        "n_candidates": int(problem.n_candidates),
        **solve_meta(exact),
    }
    return plan_from_outcome(problem, outcome, solver, meta)


def solve_meta(exact: ExactSolver) -> dict[str, Any]:
    """The plan's record of the exact solve: LP engine, time split (s), what fixing left."""
    st = exact.stats
    return {"lp": st.get("lp"), "lp_time_s": st.get("lp_s"), "fix_time_s": st.get("fix_s"),
            "mip_time_s": st.get("mip_s"), "n_vars_after_fixing": st.get("n_vars_after_fixing"),
            "n_groups_after_fixing": st.get("n_groups_after_fixing"), "lp_gap_rel": st.get("lp_gap_rel"),
            "closed_by": st.get("closed_by"), "branch_time_s": st.get("bb_s"), "branch_nodes": st.get("bb_nodes"),
            "branch_lps": st.get("bb_lps")}


def check_gap_rel(value: Any, where: str = "allocate", key: str = "gap_rel") -> float:
    """``value`` as a float if it follows :data:`GAP_REL_RULE`, else a ConfigError naming ``where``/``key``."""
    return check_number(value, where, key, min=0, max=1, max_exclusive=True, rule=GAP_REL_RULE)


def plan_from_outcome(problem: Problem, outcome: SolverOutcome, solver: str, meta: dict[str, Any]) -> BitPlan:
    """Turn a solver outcome that holds a solution into a :class:`BitPlan`."""
    if outcome.chosen is None:
        raise MpsearchError(f"allocate: the solver must find a plan, but it stopped with {outcome.raw!r} before "
                            f"finding any; raise time_limit_s (was {meta.get('time_limit_s')})")
    rows = problem.table_rows(outcome.chosen)
    objective = float(problem.table.omega[rows].sum())
    gap = None
    if outcome.status == OPTIMAL:
        gap = 0.0
    elif outcome.bound is not None:  # bound is in solver units: undo the shift and scale
        bound = problem.cost_const + problem.cost_scale * outcome.bound
        gap = max(0.0, objective - bound) / max(abs(objective), 1e-300)
    meta = dict(meta, solver_status=outcome.raw)
    return problem.table.plan_from_rows(
        rows, solver=solver, status=outcome.status, optimal=outcome.status == OPTIMAL,
        gap=gap if gap is None or math.isfinite(gap) else None, solve_time_s=outcome.solve_time_s, meta=meta)
