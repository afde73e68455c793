"""Group branching for cores with one or two budget rows, compiled with numba (the ``fast`` extra).

Why: a sweep with two budgets (size swept, latency held) leaves LP gaps of 2-50 % of the
objective, so every point branches (2-68 nodes, ~3000 node LPs per 50-point sweep). With
HiGHS each node LP is ~0.2 ms plus ~0.5 ms of Python around it (rounding, bounds); here a node
is a few tens of microseconds of compiled code, so the search can afford many more nodes.

The bound of a node is the Lagrangian bound ``L(l1, l2)`` of its allowed candidates (see
:mod:`mpsearch.allocation._lagrange_kernels`), with the multipliers searched per node from its
parent's: for a fixed ``l2`` the best ``l1`` by line intersection on the concave
piecewise-linear ``L(., l2)``, and the same over ``l2`` with the supergradient of the inner
maximum. At the maximum this is the LP bound of the node (LP duality); short of it, it is a
weaker bound, never a wrong one: ``L`` is valid for any multipliers >= 0, and every value is
lowered by a bound on its float rounding error. Budgets are compared with the same relative
slack as :mod:`mpsearch.allocation.branching` (the rows are scaled), and the bound is taken
against those slackened limits, so it holds for every plan the search accepts.

The search is depth first (children in order of their bound, node fixing by reduced costs,
rounding + repair + greedy upgrades for incumbents); see
:mod:`mpsearch.allocation._lagrange_search`. It returns the same
:class:`~mpsearch.allocation.branching.BranchResult` as the HiGHS search.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np

from mpsearch.allocation.branching import _FIT_TOL, BranchResult
from mpsearch.allocation.problem import Core

#: Budget rows this search handles (more rows: the HiGHS search).
MAX_ROWS = 2
#: Nodes evaluated per search (a count, not a clock: the same plan on any machine). At ~20-50 us
#: a node this is 0.2-1 s; a search that has not closed by then hands over to the MIP engine.
MAX_NODES = 20_000


def available() -> bool:
    """True when numba can be imported (checked without importing it)."""
    return importlib.util.find_spec("numba") is not None


def load_numba() -> ModuleType:
    """numba, with its disk cache outside the source tree: ``$NUMBA_CACHE_DIR`` if set, else
    ``$MPSEARCH_CACHE/numba`` or ``~/.cache/mpsearch/numba`` (the folder the executor's kernels
    use, see mpsearch/execution/kernels/_numba_jit.py; not imported here, it loads torch)."""
    import numba

    if not os.environ.get("NUMBA_CACHE_DIR") and not numba.config.CACHE_DIR:
        root = os.environ.get("MPSEARCH_CACHE") or str(Path.home() / ".cache" / "mpsearch")
        os.environ["NUMBA_CACHE_DIR"] = str(Path(root) / "numba")
        numba.core.config.reload_config()
    return numba


def _rows(core: Core, limits: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, float, float]:
    """``(s, t, two, b1, b2)``: the rows as the kernels read them, limits with the fit slack."""
    n_rows = len(core.coef)
    if not 1 <= n_rows <= MAX_ROWS:
        raise ValueError(f"lagrange_bb: the core must have 1 to {MAX_ROWS} budget rows, but it has {n_rows}")
    limits = np.asarray(limits, dtype=np.float64)
    tol_limits = limits + _FIT_TOL * (1.0 + np.abs(limits))  # as branching.py's fits()
    s = np.ascontiguousarray(core.coef[0], dtype=np.float64)
    two = n_rows == 2
    t = np.ascontiguousarray(core.coef[1], dtype=np.float64) if two else np.zeros_like(s)
    return s, t, two, float(tol_limits[0]), float(tol_limits[1]) if two else 0.0


def root_bound(core: Core, limits: np.ndarray, lam: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """``(multipliers, bound)``: the Lagrangian bound of the whole core searched from ``lam`` (the
    LP bound, see test_lagrange_bb.py); ``inf`` when no plan meets one of the rows on its own."""
    from mpsearch.allocation._lagrange_kernels import kernel

    s, t, two, b1, b2 = _rows(core, limits)
    lam = np.zeros(2) if lam is None else np.maximum(np.asarray(lam, dtype=np.float64), 0.0)
    l1, l2, bound = kernel("bound")(float(lam[0]), float(lam[1]) if two else 0.0, two,
                                    np.ascontiguousarray(core.cost, dtype=np.float64), s, t,
                                    np.ascontiguousarray(core.group_ptr, dtype=np.int64),
                                    np.full(core.n_groups, -1, dtype=np.int64), np.full(core.n_vars, -1, dtype=np.int64),
                                    b1, b2, np.inf)
    return np.array([l1, l2][:len(core.coef)]), float(bound)


def branch_lagrange(core: Core, limits: np.ndarray, start: np.ndarray | None, gap_abs: float,
                    lam: np.ndarray | None = None, max_nodes: int = MAX_NODES) -> BranchResult:
    """Search the core (see module docstring) for a plan within ``gap_abs`` of its optimum.

    Args:
        core: the (normalized) core, one or two budget rows.
        limits: its budget limits (core units).
        start: a feasible plan to start from (chosen core variable per group), or None.
        gap_abs: stop once the best plan is within this of the bound (0: prove the optimum).
        lam: multipliers to start the root's search from (the LP duals scaled to the core), or None.
        max_nodes: most nodes evaluated before giving up (the result is then not closed).
    """
    from mpsearch.allocation._lagrange_kernels import kernel

    n_rows = len(core.coef)
    s, t, two, b1, b2 = _rows(core, limits)
    limits = np.asarray(limits, dtype=np.float64)
    weight = (core.coef / np.maximum(np.abs(limits), 1e-12)[:, None]).sum(axis=0)
    lam = np.zeros(n_rows) if lam is None else np.maximum(np.asarray(lam, dtype=np.float64), 0.0)
    first = np.full(core.n_groups, -1, dtype=np.int64) if start is None else np.asarray(start, dtype=np.int64)
    plan, upper, bound, n_branch, n_eval, finished = kernel("search")(
        np.ascontiguousarray(core.cost, dtype=np.float64), s, t, two, b1, b2,
        np.ascontiguousarray(core.group_ptr, dtype=np.int64), np.ascontiguousarray(core.var_group, dtype=np.int64),
        weight, first, float(gap_abs), float(lam[0]), float(lam[1]) if two else 0.0, int(max_nodes))
    chosen = None if core.n_groups == 0 or plan[0] < 0 else plan
    # the search prunes at 1e-12 x (1 + |upper|) below the incumbent (branching.py's tolerance);
    # twice that absorbs the rounding of summing the plan again here
    tol = 2e-12 * (1.0 + abs(upper)) if np.isfinite(upper) else 0.0
    closed = upper - bound <= gap_abs + tol or (bool(finished) and not np.isfinite(upper))
    optimal = bool(closed and upper - bound <= tol)
    upper = float(core.cost[chosen].sum()) if chosen is not None else np.inf
    return BranchResult(chosen, upper, float(min(bound, upper)), bool(closed), optimal, int(n_branch), int(n_eval))
