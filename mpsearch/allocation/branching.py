"""Best-first branch and bound over whole groups, on the core left after reduced-cost fixing.

Why not leave this to the MIP engine: CBC and HiGHS branch on one binary at a time. In a
one-hot group, ``x_j = 0`` lets the group slide to a neighbour of almost the same cost, so the
bound barely moves, and tables with a few large layers (whose fractional LP choice is what
separates the LP bound from the optimum) took them seconds at 1000 layers. Branching on the
group instead (one child per candidate: "this layer takes candidate j") moves the bound by
the full price of deciding that layer; on the benchmark tables one or two such branchings
close most of the gap (see docs/architecture.md, "Allocation").

Each node is an LP with some groups decided; it is re-solved warm in the LP engine (only
column bounds change). A node's bound is not the LP's objective but the Lagrangian bound
recomputed here from the node LP's budget duals (:func:`node_bound`), which holds for any
multipliers, so no LP tolerance can prune a better plan. The node to branch on is the
open node of lowest bound; the group to branch on is chosen by strong branching: of the
LP's fractional groups, the one whose weakest child bound is highest. Child LP solutions
are rounded (fractional groups take their lightest candidate in the support) for new
incumbents. Search stops when the incumbent is within ``gap_abs`` of the lowest open bound,
when no node is left (proven optimal), or at ``max_nodes`` / the deadline (not closed: the
caller hands the core to the MIP engine, starting from the best plan found here).
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass

import numpy as np

from mpsearch.allocation.problem import Core
from mpsearch.allocation.reduce import greedy_upgrade
from mpsearch.allocation.solvers._base import LP_INFEASIBLE, LP_OPTIMAL, LpEngine, LpResult

#: LP values above this (and below 1 - this) make a group fractional.
_FRAC_TOL = 1e-7

#: Most greedy upgrades spent on a rounded node LP solution (rounding down leaves slack).
_FILL_MOVES = 10

#: Relative slack on budget rows when checking a plan: the rows are scaled, so a plan exactly at
#: a budget may come out one rounding step over it.
_FIT_TOL = 1e-12


@dataclass(frozen=True)
class BranchResult:
    """What the search found (core units).

    Attributes:
        chosen: best plan (core variable per group), or None if none was found.
        upper: its objective (inf without a plan).
        bound: proven lower bound on the core optimum.
        closed: ``upper - bound <= gap_abs`` (or no plan exists: ``bound`` is inf).
        optimal: ``upper - bound`` is within float rounding of 0 (proven optimal).
        n_nodes: nodes branched on.
        n_lps: LPs solved.
    """

    chosen: np.ndarray | None
    upper: float
    bound: float
    closed: bool
    optimal: bool
    n_nodes: int
    n_lps: int


def node_bound(core: Core, lam: np.ndarray, limits: np.ndarray, allowed: np.ndarray) -> float:
    """Lagrangian bound of the node whose variables ``allowed`` (mask) may be chosen.

    ``sum_g min_{j in g, allowed} (cost_j + lam . coef_j) - lam . limits``, valid for any
    ``lam >= 0``; inf if a group has no allowed variable.
    """
    return _priced(core, lam, limits, allowed)[2]


def _priced(core: Core, lam: np.ndarray, limits: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(v, y, bound)``: priced costs ``v = cost + lam . coef`` per variable, their minima ``y``
    over each group's allowed variables (``v_j - y_g`` is j's reduced cost in the node), and
    :func:`node_bound`."""
    v = core.cost + lam @ core.coef if len(lam) else core.cost.copy()
    y = np.minimum.reduceat(np.where(allowed, v, np.inf), core.group_ptr[:-1])
    return v, y, float(y.sum() - (lam @ limits if len(lam) else 0.0))


def branch_and_bound(core: Core, limits: np.ndarray, lp: LpEngine, start: np.ndarray | None, gap_abs: float,
                     max_nodes: int = 200, deadline: float | None = None, root: LpResult | None = None) -> BranchResult:
    """Search the core (see module docstring); ``lp`` holds the core's LP with ``limits`` set.

    Args:
        core: the (normalized) core.
        limits: its budget limits (core units).
        lp: an LP engine built on ``core``; ``lp.solve(limits)`` must have been called.
        start: a feasible plan to start from, or None.
        gap_abs: stop once the best plan is within this of the bound (0: prove the optimum).
        max_nodes: most nodes branched on before giving up.
        deadline: ``time.perf_counter()`` value at which to give up (None: none); checked before
            every node LP.
        root: the result of that ``lp.solve(limits)``, so the root LP is not solved twice.
    """
    search = _Search(core, np.asarray(limits, dtype=np.float64), lp, start, gap_abs, deadline)
    node = search.evaluate(np.ones(core.n_vars, dtype=bool), root)
    if node is None:
        # an infeasible root LP contradicts a feasible start: trust neither, let the MIP decide
        search.failed = search.failed or search.chosen is not None
        return search.result(np.inf)
    heap = [(node[0], 0, node[1], node[2])]
    counter = 1
    n_nodes = 0
    while heap:
        if search.upper - min(heap[0][0], search.closed_bound) <= gap_abs + search.tol() or n_nodes >= max_nodes:
            break
        if search.failed or search.out_of_time():
            break
        bound, order, allowed, frac = heapq.heappop(heap)
        if bound >= search.upper - gap_abs - search.tol():
            search.close(bound)
            continue
        children = search.branch(allowed, frac)
        if children is None:  # out of time before every child had its LP: the node stays open
            heapq.heappush(heap, (bound, order, allowed, frac))
            break
        n_nodes += 1
        for child_bound, child_allowed, child_frac in children:
            if child_bound >= search.upper - gap_abs - search.tol():
                search.close(child_bound)
            else:
                heapq.heappush(heap, (child_bound, counter, child_allowed, child_frac))
                counter += 1
    search.n_nodes = n_nodes
    return search.result(heap[0][0] if heap else np.inf)


class _Search:
    """Node LPs, bounds and incumbents of one search.

    ``closed_bound`` is the lowest bound of everything the search set aside without exploring
    (pruned nodes, candidates removed by node fixing): the optimum is at least
    ``min(closed_bound, lowest open bound, incumbent)``.
    """

    def __init__(self, core: Core, limits: np.ndarray, lp: LpEngine, start: np.ndarray | None, gap_abs: float,
                 deadline: float | None) -> None:
        self.core, self.limits, self.lp, self.gap_abs, self.deadline = core, limits, lp, gap_abs, deadline
        self.n_lps = 0
        self.n_nodes = 0
        self.failed = False
        self.closed_bound = np.inf
        self.chosen: np.ndarray | None = None
        self.upper = np.inf
        self._weight = (core.coef / np.maximum(np.abs(limits), 1e-12)[:, None]).sum(axis=0)
        # budgets are compared in scaled core units: allow their rounding (a plan exactly at a
        # budget in table units may land one rounding step above it here)
        self._limit_tol = limits + _FIT_TOL * (1.0 + np.abs(limits))
        if start is not None:
            self.offer(np.asarray(start, dtype=np.int64))

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def fits(self, chosen: np.ndarray) -> bool:
        """``chosen`` meets every budget (up to the rounding of the scaled rows)."""
        return bool(np.all(self.core.coef[:, chosen].sum(axis=1) <= self._limit_tol))

    def offer(self, chosen: np.ndarray) -> None:
        """Keep ``chosen`` if it meets every budget and beats the incumbent."""
        value = float(self.core.cost[chosen].sum())
        if value < self.upper and self.fits(chosen):
            self.chosen, self.upper = chosen, value

    def close(self, bound: float) -> None:
        """Set aside a node or candidates whose plans all cost at least ``bound``."""
        self.closed_bound = min(self.closed_bound, bound)

    def evaluate(self, allowed: np.ndarray, res: LpResult | None = None) -> tuple[float, np.ndarray, np.ndarray] | None:
        """``(bound, allowed, groups to branch on)`` of the node, or None if it holds no plan (or
        the LP failed: then ``failed`` is set and the caller gives up)."""
        if res is None:
            self.n_lps += 1
            res = self.lp.solve_bounded(allowed.astype(np.float64))
        if res.status == LP_INFEASIBLE:
            return None
        if res.status != LP_OPTIMAL:  # no LP answer: give up, the MIP engine takes over
            self.failed = True
            return None
        core, ptr = self.core, self.core.group_ptr
        v, y, bound = _priced(core, res.lam, self.limits, allowed)
        if bound < self.upper - self.gap_abs - self.tol():  # a node that may hold a plan worth having
            key = np.where(res.x > _FRAC_TOL, self._weight, np.inf)
            rounded = np.lexsort((key, core.var_group))[ptr[:-1]]
            if self.fits(rounded):
                self.offer(greedy_upgrade(core, self.limits, rounded, _FILL_MOVES))
        # reduced-cost fixing in the node: a plan using j costs >= bound + rc_j. What is removed
        # is set aside with that bound, so the search's bound stays a bound (only plans the
        # incumbent already matches within gap_abs are given up).
        rc = v - y[core.var_group]
        keep = allowed & (rc <= self.upper - self.gap_abs - bound + self.tol())
        removed = allowed & ~keep
        if removed.any():
            self.close(bound + float(rc[removed].min()))
        frac = np.nonzero(np.maximum.reduceat(res.x, ptr[:-1]) < 1 - _FRAC_TOL)[0]
        if len(frac) == 0:
            plan = np.lexsort((-res.x, core.var_group))[ptr[:-1]]
            if not self.fits(plan):  # an integral LP plan a hair over a budget: split the node further
                counts = np.add.reduceat(keep.astype(np.int64), ptr[:-1])
                frac = np.nonzero(counts > 1)[0][:1]
        return bound, keep, frac

    def branch(self, allowed: np.ndarray, frac: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]] | None:
        """Children of the node by strong branching over ``frac`` (see module docstring); None
        when the deadline passed before they were all evaluated."""
        ptr = self.core.group_ptr
        best: list = []
        best_score = -np.inf
        for g in frac.tolist():
            children = []
            for j in np.nonzero(allowed[ptr[g]:ptr[g + 1]])[0] + ptr[g]:
                if self.out_of_time():
                    return None
                child = allowed.copy()
                child[ptr[g]:ptr[g + 1]] = False
                child[j] = True
                node = self.evaluate(child)
                if self.failed:
                    return None
                if node is not None:
                    children.append(node)
            score = min((c[0] for c in children), default=np.inf)
            if score > best_score:
                best, best_score = children, score
            if best_score >= self.upper - self.gap_abs - self.tol():
                break  # every child of this group is pruned: the node is settled, no need to look further
        return best

    def tol(self) -> float:
        """Float rounding allowed when comparing a bound with the incumbent (core units)."""
        return 1e-12 * (1.0 + abs(self.upper)) if np.isfinite(self.upper) else 0.0

    def result(self, lowest_open: float) -> BranchResult:
        if self.failed:
            return BranchResult(self.chosen, self.upper, -np.inf, False, False, self.n_nodes, self.n_lps)
        bound = min(lowest_open, self.closed_bound, self.upper)
        closed = self.upper - bound <= self.gap_abs + self.tol() or not np.isfinite(bound)
        optimal = closed and self.upper - bound <= self.tol()
        return BranchResult(self.chosen, self.upper, bound, bool(closed), bool(optimal), self.n_nodes, self.n_lps)
