"""Exact reductions before the MIP: a Lagrangian bound, an incumbent, reduced-cost fixing.

For multipliers ``lam >= 0`` on the budget rows (``coef @ x <= b``) and per variable
``v_j = cost_j + lam . coef_j``, the group minima ``y_g = min_{j in g} v_j`` give

* the bound ``L(lam) = sum_g y_g - lam . b`` (Lagrangian relaxation; the LP optimum when
  ``lam`` are the LP's budget duals), and
* reduced costs ``rc_j = v_j - y_g >= 0``, with, for every feasible assignment ``x``,
  ``cost(x) = L + sum_g rc_{x_g} + lam . (b - coef @ x)``, every term after ``L`` >= 0.

So a candidate with ``rc_j > UB - L`` (UB: the cost of a feasible incumbent) is in no
assignment that costs UB or less: removing it keeps every optimum. Nothing relies on the
duals being accurate: ``L`` and ``rc`` are recomputed here from ``lam``, and any ``lam >= 0``
is valid (a poor one only removes less). Groups left with one candidate are fixed and move to
the constant side of the budget rows; the rest form a small :class:`Core` for the MIP.

With k budget rows the LP optimum has at most k fractional groups, so rounding them down and
greedily upgrading while the budgets hold gives an incumbent a hair above ``L``.
All arrays are flat over the problem's variables (solver units, see :class:`Problem`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpsearch.allocation.local_search import local_search
from mpsearch.allocation.problem import Core, Problem

#: x above this counts as "in the LP support"; below 1 - this a group is fractional.
_SUPPORT_TOL = 1e-7


def lagrangian(problem: Problem, lam: np.ndarray, limits: np.ndarray) -> tuple[float, np.ndarray, float]:
    """``(L, rc, tol)``: the bound, reduced costs ``(n_vars,)`` and a float-rounding tolerance.

    ``tol`` bounds the rounding error of ``L`` and ``rc`` (it scales with the magnitudes summed);
    callers add it on the side that keeps more candidates.
    """
    v = problem.cost + lam @ problem.coef if len(lam) else problem.cost.copy()
    y = np.minimum.reduceat(v, problem.group_ptr[:-1])
    rc = v - y[problem.var_group]
    lam_b = float(lam @ limits) if len(lam) else 0.0
    bound = float(y.sum()) - lam_b
    tol = 1e-9 * (1.0 + float(np.abs(y).sum()) + abs(lam_b))
    return bound, rc, tol


def incumbent(problem: Problem, limits: np.ndarray, x: np.ndarray | None,
              start: np.ndarray | None = None, max_moves: int = 200, rc: np.ndarray | None = None,
              bound: float | None = None, search: bool = True, target: float | None = None) -> np.ndarray | None:
    """A feasible assignment (chosen variable per group) near the LP optimum, or None.

    Integral groups keep their LP choice; a fractional group takes the candidate of its LP
    support that uses the least budget (relative to the limits); budgets that this breaks are
    repaired by the cheapest downgrades, then slack is spent on the best upgrades (objective
    gain per unit of slack). ``start``, if feasible and cheaper, wins. Last, unless ``search``
    is False, :func:`~mpsearch.allocation.local_search.local_search` (single moves and pair
    swaps, pool ranked by the reduced costs ``rc`` of the bound ``bound`` when given) improves
    the winner; it only ever lowers the objective and keeps every budget. It is skipped, or
    stops early, once the objective is at or below ``target`` (a plan close enough to the bound).
    """
    limits = np.asarray(limits, dtype=np.float64)
    best = start if start is not None and _feasible(problem, start, limits) else None
    if x is not None:
        weight = (problem.coef / np.maximum(np.abs(limits), 1e-12)[:, None]).sum(axis=0)
        # in the support: the lightest candidate; out of it: never (key = +inf)
        key = np.where(x > _SUPPORT_TOL, weight, np.inf)
        chosen = np.lexsort((key, problem.var_group))[problem.group_ptr[:-1]]
        chosen = _repair(problem, limits, chosen, max_moves)
        if chosen is not None:
            chosen = greedy_upgrade(problem, limits, chosen, max_moves)
            if best is None or problem.cost[chosen].sum() < problem.cost[best].sum():
                best = chosen
    if best is not None and search and (target is None or problem.cost[best].sum() > target):
        best = local_search(problem, limits, best, rc, bound, max_rounds=max_moves, target=target)
    return best


@dataclass(frozen=True)
class Restricted:
    """A problem after fixing: the free ``core``, its limits, and how to map back.

    Attributes:
        core: the groups with two or more candidates left (their kept candidates only).
        limits: budget limits of the core (the fixed groups' use subtracted).
        core_vars: problem variable of each core variable.
        fixed: chosen problem variable of every group (-1 where the group is free).
        fixed_cost: cost of the fixed groups (solver units).
        core_index: core variable of each problem variable (-1 if removed or fixed).
    """

    core: Core
    limits: np.ndarray
    core_vars: np.ndarray
    fixed: np.ndarray
    fixed_cost: float
    core_index: np.ndarray

    def to_problem(self, core_chosen: np.ndarray) -> np.ndarray:
        """Chosen problem variable per group from the chosen core variable per free group."""
        out = self.fixed.copy()
        out[out < 0] = self.core_vars[np.asarray(core_chosen, dtype=np.int64)]
        return out

    def to_core(self, chosen: np.ndarray) -> np.ndarray | None:
        """Chosen core variable per free group from a full assignment (None if it uses a removed one)."""
        out = self.core_index[np.asarray(chosen)[self.fixed < 0]]
        return None if np.any(out < 0) else out


def restrict(problem: Problem, keep: np.ndarray, limits: np.ndarray) -> Restricted:
    """Keep the variables in mask ``keep`` (every group must keep one); fix single-candidate groups."""
    counts = np.add.reduceat(keep.astype(np.int64), problem.group_ptr[:-1])
    fixed_group = counts == 1
    fixed = np.full(problem.n_groups, -1, dtype=np.int64)
    fixed_vars = np.nonzero(keep & fixed_group[problem.var_group])[0]
    fixed[problem.var_group[fixed_vars]] = fixed_vars
    core_vars = np.nonzero(keep & ~fixed_group[problem.var_group])[0]  # sorted, so grouped
    free_groups = np.nonzero(~fixed_group)[0]
    renumber = np.full(problem.n_groups, -1, dtype=np.int64)
    renumber[free_groups] = np.arange(len(free_groups))
    group_ptr = np.zeros(len(free_groups) + 1, dtype=np.int64)
    group_ptr[1:] = np.cumsum(counts[free_groups])
    core = Core(problem.cost[core_vars], problem.coef[:, core_vars], renumber[problem.var_group[core_vars]], group_ptr)
    sub_limits = np.asarray(limits, dtype=np.float64) - problem.coef[:, fixed_vars].sum(axis=1)
    core_index = np.full(problem.n_vars, -1, dtype=np.int64)
    core_index[core_vars] = np.arange(len(core_vars))
    return Restricted(core, sub_limits, core_vars, fixed, float(problem.cost[fixed_vars].sum()), core_index)


# -- heuristics (any feasible result is fine for exactness; a good one removes more) ------------
def _feasible(problem: Problem, chosen: np.ndarray, limits: np.ndarray) -> bool:
    return bool(np.all(problem.coef[:, chosen].sum(axis=1) <= limits))


def _moves(problem: Problem, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Objective change ``(n_vars,)`` and budget change ``(n_rows, n_vars)`` of switching to each variable."""
    current = chosen[problem.var_group]
    return problem.cost - problem.cost[current], problem.coef - problem.coef[:, current]


def _repair(problem: Problem, limits: np.ndarray, chosen: np.ndarray, max_moves: int) -> np.ndarray | None:
    """Downgrade until every budget holds: cheapest objective rise per unit of violation removed."""
    chosen = chosen.copy()
    for _ in range(max_moves):
        excess = problem.coef[:, chosen].sum(axis=1) - limits
        over = excess > 0
        if not over.any():
            return chosen
        d_cost, d_coef = _moves(problem, chosen)
        relief = (np.minimum(-d_coef[over], excess[over, None]).clip(min=0) / excess[over, None]).sum(axis=0)
        # a move must relieve a broken row and keep every other row within its limit
        ok = (relief > 0) & np.all(d_coef[~over] <= -excess[~over, None], axis=0)
        if not ok.any():
            return None
        score = np.where(ok, np.maximum(d_cost, 0.0) / np.where(ok, relief, 1.0), np.inf)
        j = int(np.argmin(score))
        chosen[problem.var_group[j]] = j
    return None


def greedy_upgrade(problem: Problem | Core, limits: np.ndarray, chosen: np.ndarray, max_moves: int) -> np.ndarray:
    """Upgrade a feasible ``chosen`` while budgets hold: each move the largest objective drop per
    unit of (relative) slack used, at most ``max_moves`` moves (a new array)."""
    chosen = chosen.copy()
    for _ in range(max_moves):
        slack = limits - problem.coef[:, chosen].sum(axis=1)  # >= 0
        d_cost, d_coef = _moves(problem, chosen)
        ok = (d_cost < 0) & np.all(d_coef <= slack[:, None], axis=0)
        if not ok.any():
            break
        use = (d_coef.clip(min=0) / np.maximum(slack, 1e-300)[:, None]).sum(axis=0)
        score = np.where(ok, d_cost / (use + 1e-12), np.inf)
        j = int(np.argmin(score))
        chosen[problem.var_group[j]] = j
    return chosen
