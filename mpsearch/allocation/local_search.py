"""Local search on a feasible assignment: single moves and pair swaps, each strictly improving.

A *move* switches one group from its chosen variable to another of its variables. A state
is improved by

* a single move that lowers the objective and fits in the slack of every budget row, or
* a pair swap: two moves in different groups whose summed objective change is negative and
  whose summed resource change fits in the slack (typically one layer up, one layer down: the
  down move frees what the up move needs).

The best improvement (largest objective drop) is applied each round, until none is left or
``max_rounds`` is spent. Every state visited is feasible and cheaper than the one before.

Which moves are worth looking at comes from the Lagrangian (see :mod:`mpsearch.allocation.reduce`):
for any feasible ``x``, ``cost(x) = L + sum_g rc_{x_g} + lam . slack(x)`` with every term >= 0,
so a state cheaper than the current one (cost ``U``) uses no variable with ``rc > U - L``.
Moves to such variables are skipped: exact, not a heuristic cut. The remaining pool is capped
at the ``max_pool`` variables of smallest reduced cost, which bounds a round's work at
``O(max_pool^2 x n_rows)`` (done in chunks, as numpy arrays).
All arrays are in solver units (see :class:`mpsearch.allocation.problem.Problem`).
"""

from __future__ import annotations

import numpy as np

from mpsearch.allocation.problem import Problem

#: Pair evaluations per chunk of the pair search (bounds its memory: ~ this x 8 bytes x 3).
_PAIR_CHUNK = 1 << 21


def local_search(problem: Problem, limits: np.ndarray, chosen: np.ndarray, rc: np.ndarray | None = None,
                 bound: float | None = None, max_rounds: int = 200, max_pool: int = 2000, max_forced: int = 32,
                 max_triple_pool: int = 500, target: float | None = None) -> np.ndarray:
    """Improve a feasible assignment by single moves and pair swaps (see module docstring).

    Args:
        problem: the problem (solver units).
        limits: budget limits ``(n_rows,)``, solver units.
        chosen: chosen variable per group ``(n_groups,)``; must be feasible.
        rc: reduced costs ``(n_vars,)`` for some multipliers, with ``bound`` their Lagrangian
            bound; both or neither. They restrict moves to variables that can appear in a
            cheaper assignment and rank the pool. Without them every variable is in the pool.
        bound: the Lagrangian bound that goes with ``rc``.
        max_rounds: most moves (a pair swap counts as one) applied.
        max_pool: most candidate target variables looked at per round.
        max_forced: most moves tried as the first of a triple per round (the moves that lower
            the summed reduced cost most; with ``rc`` only).
        max_triple_pool: the pair of a triple is looked for among this many pool variables
            (those of smallest reduced cost): a triple round costs ``max_forced x
            max_triple_pool^2`` pair checks, the search's largest expense.
        target: stop as soon as the objective is at or below this (solver units): a caller
            that only needs a plan within some gap of ``bound`` passes ``bound`` + that gap.

    Returns:
        A feasible assignment costing no more than ``chosen`` (a new array).
    """
    limits = np.asarray(limits, dtype=np.float64)
    chosen = np.array(chosen, dtype=np.int64)
    cost, coef, group = problem.cost, problem.coef, problem.var_group
    if problem.n_vars == 0:
        return chosen
    order = np.argsort(rc, kind="stable") if rc is not None else np.arange(problem.n_vars)
    for _ in range(max_rounds):
        upper = float(cost[chosen].sum())
        if target is not None and upper <= target:
            break
        slack = limits - coef[:, chosen].sum(axis=1)
        cand = order
        if rc is not None and bound is not None:  # exact: a cheaper state uses no var with rc > U - L
            cand = order[: int(np.searchsorted(rc[order], upper - bound, side="right"))]
        cand = cand[chosen[group[cand]] != cand][:max_pool]
        if len(cand) == 0:
            break
        cur = chosen[group[cand]]
        d_cost = cost[cand] - cost[cur]  # (m,)
        d_coef = coef[:, cand] - coef[:, cur]  # (n_rows, m)
        moves = _best_single(d_cost, d_coef, slack)
        if moves is None:
            moves = _best_pair(d_cost, d_coef, slack, group[cand])
        if moves is None and rc is not None:
            t = min(len(cand), max_triple_pool)  # cand is ordered by rc: the pool's cheapest moves
            moves = _best_triple(d_cost[:t], d_coef[:, :t], slack, group[cand[:t]], rc[cur[:t]] - rc[cand[:t]],
                                 max_forced)
        if moves is None:
            break
        trial = chosen.copy()
        for i in moves:
            trial[group[cand[i]]] = cand[i]
        # recheck from scratch: the slack test above is in float sums of differences
        if not np.all(coef[:, trial].sum(axis=1) <= limits) or cost[trial].sum() >= upper:
            break
        chosen = trial
    return chosen


def _best_single(d_cost: np.ndarray, d_coef: np.ndarray, slack: np.ndarray) -> tuple[int] | None:
    """Index of the improving move that fits and drops the objective most, or None."""
    ok = (d_cost < 0) & np.all(d_coef <= slack[:, None], axis=0)
    if not ok.any():
        return None
    return (int(np.argmin(np.where(ok, d_cost, np.inf))),)


def _best_triple(d_cost: np.ndarray, d_coef: np.ndarray, slack: np.ndarray, group: np.ndarray,
                 rc_drop: np.ndarray, max_forced: int) -> tuple[int, ...] | None:
    """The best improving ``forced move + pair`` (three groups), or None.

    The forced move is one of the ``max_forced`` moves with the largest ``rc_drop`` (how much
    it lowers the summed reduced cost): it undoes a costly choice, the pair pays for it.
    """
    forced = np.argsort(-rc_drop, kind="stable")[:max_forced]
    forced = forced[rc_drop[forced] > 0]
    best_val, best = 0.0, None
    for f in forced.tolist():
        other = group != group[f]
        pair = _best_pair(d_cost, d_coef, slack - d_coef[:, f], group, offset=d_cost[f],
                          mask=other, best_val=best_val)
        if pair is not None:
            best_val = float(d_cost[f] + d_cost[pair[0]] + d_cost[pair[1]])
            best = (f, *pair)
    return best


def _best_pair(d_cost: np.ndarray, d_coef: np.ndarray, slack: np.ndarray, group: np.ndarray,
               offset: float = 0.0, mask: np.ndarray | None = None,
               best_val: float = 0.0) -> tuple[int, int] | None:
    """Indices ``(a, b)`` of the best improving pair of moves in two groups that fits, or None.

    Improving means ``offset + d_cost[a] + d_cost[b] < best_val``; only moves in ``mask`` are
    used. ``a`` runs over moves with ``d_cost < (best_val - offset) / 2`` (a pair under the
    threshold has one), ``b`` over all.
    """
    m = len(d_cost)
    usable = np.ones(m, dtype=bool) if mask is None else mask
    ups = np.nonzero(usable & (d_cost < (best_val - offset) / 2))[0]
    if len(ups) == 0 or m < 2:
        return None
    best_val, best = best_val - offset, None
    d_cost = np.where(usable, d_cost, np.inf)
    step = max(1, _PAIR_CHUNK // m)
    for s in range(0, len(ups), step):
        a = ups[s:s + step]
        val = d_cost[a][:, None] + d_cost[None, :]  # (chunk, m)
        ok = (val < best_val) & (group[a][:, None] != group[None, :])
        for r in range(len(slack)):
            if not ok.any():
                break
            ok &= d_coef[r, a][:, None] + d_coef[r][None, :] <= slack[r]
        if ok.any():
            flat = int(np.argmin(np.where(ok, val, np.inf)))
            i, j = divmod(flat, m)
            best_val, best = float(val[i, j]), (int(a[i]), int(j))
    return best
