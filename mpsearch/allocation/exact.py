"""The exact solve used by allocate, pareto and the infeasibility diagnosis.

LP relaxation -> incumbent -> reduced-cost fixing (:mod:`mpsearch.allocation.reduce`) -> group
branching on the groups left free (:mod:`mpsearch.allocation.branching`, where the LP engine
re-solves node LPs in-process: HiGHS) -> if that has not closed the gap within its node
budget, the requested MIP solver on the same core, started from the best plan so far. Fixing
keeps every assignment that costs no more than the incumbent, so the optimum on the core is
the optimum of the whole problem; when fixing leaves nothing free, the incumbent is proven
optimal without a search. ``reduce=False`` hands the whole problem to the MIP solver instead.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from mpsearch.allocation import lagrange_bb
from mpsearch.allocation.branching import BranchResult, branch_and_bound
from mpsearch.allocation.problem import Core, Problem
from mpsearch.allocation.reduce import incumbent, lagrangian, restrict
from mpsearch.allocation.solvers import get_backend, get_lp_engine
from mpsearch.allocation.solvers._base import LP_INFEASIBLE, LP_OPTIMAL
from mpsearch.allocation.status import INFEASIBLE, OPTIMAL, TIME_LIMIT, WITHIN_GAP, SolverOutcome


#: Branching nodes per solve (in-process LPs). 30 handed 6 of 50 points of the 54-layer sweep with a
#: second budget (and half of the 100-layer tables) to the MIP engine at 0.1-1 s each; with 100 the
#: search closed them all (at most 68 nodes), halving the sweep (bench_allocation.py, #17).
MAX_NODES = 100


class ExactSolver:
    """One problem, solved for changing budget limits (solver units).

    After each :meth:`solve`, ``stats`` holds where the time went and how much fixing removed:
    ``lp``, ``lp_s``, ``fix_s``, ``bb_s``, ``bb_nodes``, ``bb_lps`` (group branching),
    ``mip_s``, ``n_vars_after_fixing``, ``n_groups_after_fixing``, ``lp_gap_rel`` (incumbent vs
    LP bound, relative to the objective) and ``closed_by`` (``"fixing"``, ``"gap"``,
    ``"branching"``, ``"mip"``, ``"time_limit"`` or ``"infeasible"``).
    """

    def __init__(self, problem: Problem, solver: str, msg: bool = False, reduce: bool = True,
                 max_nodes: int = MAX_NODES, fast: bool = False) -> None:
        self.problem = problem
        self.max_nodes = max_nodes
        # compiled Lagrangian branching (lagrange_bb) for <= 2 budget rows, where asked for and numba is
        # there: pareto asks when a budget is held beside the swept one (numba's start-up, ~1-3 s a process,
        # is paid once per sweep); allocate does not (one solve would pay it for a few ms saved)
        self.fast = bool(fast) and lagrange_bb.available()
        self.backend_cls = get_backend(solver)
        self.msg = msg
        self.lp = get_lp_engine(solver)(problem) if reduce and problem.n_vars else None
        self._full = None if self.lp is not None else self.backend_cls(problem, msg=msg)
        self.stats: dict[str, Any] = {}
        self._whole: tuple[Core, float, float] | None = None  # the normalized problem (compiled search)
        self._lam: np.ndarray | None = None  # the last root multipliers (compiled search)
        self._whole_plan: np.ndarray | None = None  # its best plan when it did not close

    def solve(self, scaled_limits: np.ndarray, time_limit_s: float | None, gap_rel: float,
              start: np.ndarray | None = None) -> SolverOutcome:
        """Solve with these limits; ``start`` (chosen variable per group) is used when feasible."""
        limits = np.asarray(scaled_limits, dtype=np.float64)
        if self._full is not None:
            self._full.set_limits(limits)
            out = self._full.solve(time_limit_s, gap_rel, start)
            self.stats = {"lp": None, "mip_s": out.solve_time_s, "n_vars_after_fixing": self.problem.n_vars,
                          "n_groups_after_fixing": self.problem.n_groups, "closed_by": "mip"}
            return out
        if self.fast and 1 <= len(limits) <= lagrange_bb.MAX_ROWS:
            out = self._solve_whole(limits, time_limit_s, gap_rel, start)
            if out.chosen is not None or out.status == INFEASIBLE:
                return out
            # not closed: the LP path below (fixing, the search on the core, the MIP) from its best plan
            start = self._whole_plan if self._whole_plan is not None else start
        p = self.problem
        t0 = time.perf_counter()
        lp = self.lp.solve(limits)
        t_lp = time.perf_counter()
        stats: dict[str, Any] = {"lp": self.lp.name, "lp_s": t_lp - t0, "fix_s": 0.0, "mip_s": 0.0}
        self.stats = stats
        if lp.status == LP_INFEASIBLE:  # no fractional assignment fits, so no integral one either
            stats.update(closed_by="infeasible", n_vars_after_fixing=0, n_groups_after_fixing=0)
            return SolverOutcome(INFEASIBLE, None, None, t_lp - t0, "LP relaxation infeasible")
        lam = lp.lam if lp.status == LP_OPTIMAL else np.zeros(len(limits))  # lam = 0 is still a valid bound
        bound, rc, tol = lagrangian(p, lam, limits)
        # the compiled search finds plans itself: skip the local search (~5 ms a solve) before it
        fast = self.fast and 1 <= len(limits) <= lagrange_bb.MAX_ROWS
        inc = incumbent(p, limits, lp.x, start, rc=rc, bound=bound - tol, target=_target(p, bound, gap_rel),
                        search=not fast, max_moves=FAST_INCUMBENT_MOVES if fast else 200)
        if inc is None:  # no incumbent: nothing can be removed, the MIP decides (feasibility too)
            keep = np.ones(p.n_vars, dtype=bool)
            upper = np.inf
        else:
            upper = float(p.cost[inc].sum())
            keep = rc <= upper - bound + tol
            keep[inc] = True  # the incumbent survives exactly; this only guards float noise
        red = restrict(p, keep, limits)
        t_fix = time.perf_counter()
        stats.update(fix_s=t_fix - t_lp, n_vars_after_fixing=red.core.n_vars, n_groups_after_fixing=red.core.n_groups,
                     lp_gap_rel=_rel(p, upper, bound) if inc is not None else None)

        def done(status: str, chosen: np.ndarray, lower: float, closed_by: str, raw: str) -> SolverOutcome:
            stats["closed_by"] = closed_by
            return SolverOutcome(status, chosen, lower, time.perf_counter() - t0, raw)

        if inc is not None:
            if red.core.n_groups == 0:
                return done(OPTIMAL, inc, upper, "fixing", "optimal (LP bound + reduced-cost fixing)")
            if gap_rel > 0 and _rel(p, upper, bound) <= gap_rel:
                return done(WITHIN_GAP, inc, bound, "gap", "within gap_rel of the LP bound")
        remaining = None if time_limit_s is None else time_limit_s - (t_fix - t0)
        if remaining is not None and remaining <= 0:
            if inc is None:
                return done(TIME_LIMIT, None, None, "time_limit", "time limit before the MIP (no plan found)")
            return done(TIME_LIMIT, inc, bound, "time_limit", "time limit before the MIP")
        core, shift, scale = _normalized(red.core)
        core_start = red.to_core(inc) if inc is not None else None
        core_gap = _core_gap_abs(p, gap_rel, bound, scale)

        def in_problem(core_value: float) -> float:  # core units -> solver units
            return red.fixed_cost + shift + scale * core_value

        branched = None
        if core_start is not None:
            branched = self._branch(core, red.limits, core_start, core_gap, remaining, lam / scale)
            t_bb = time.perf_counter()
            stats.update(bb_s=t_bb - t_fix, bb_nodes=branched.n_nodes, bb_lps=branched.n_lps)
            if branched.closed and branched.chosen is not None:
                chosen = red.to_problem(branched.chosen)
                if branched.optimal:
                    return done(OPTIMAL, chosen, float(p.cost[chosen].sum()), "branching", "optimal (group branching)")
                return done(WITHIN_GAP, chosen, max(bound, in_problem(branched.bound)), "branching",
                            "within gap_rel (group branching)")
            core_start = branched.chosen if branched.chosen is not None else core_start
            if remaining is not None:
                remaining -= t_bb - t_fix
                if remaining <= 0:
                    chosen = red.to_problem(core_start)
                    return done(TIME_LIMIT, chosen, max(bound, in_problem(branched.bound)), "time_limit",
                                "time limit during group branching")
        backend = self.backend_cls(core, msg=self.msg)
        backend.set_limits(red.limits)
        t_mip = time.perf_counter()
        out = backend.solve(remaining, 0.0, core_start, gap_abs=core_gap)
        stats["mip_s"] = time.perf_counter() - t_mip
        if out.status == INFEASIBLE:
            return done(INFEASIBLE, None, None, "infeasible", out.raw)
        chosen = red.to_problem(out.chosen) if out.chosen is not None else None
        best_start = red.to_problem(core_start) if core_start is not None else None
        if best_start is not None and (chosen is None or p.cost[chosen].sum() > p.cost[best_start].sum()):
            chosen = best_start  # a stopped MIP may not have beaten its start
        core_bound = out.bound
        if core_bound is None and out.status == WITHIN_GAP and chosen is not None:
            # CBC (through PuLP) reports no bound; its stop rule proves core >= core value - gap
            core_bound = (float(p.cost[chosen].sum()) - red.fixed_cost - shift) / scale - core_gap
        if branched is not None and np.isfinite(branched.bound):  # the search's bound holds whatever the MIP did
            core_bound = branched.bound if core_bound is None else max(core_bound, branched.bound)
        lower = None if core_bound is None else max(bound, in_problem(core_bound))
        if out.status == OPTIMAL and chosen is not None:
            lower = float(p.cost[chosen].sum())
        return done(out.status, chosen, lower, "mip" if out.status != TIME_LIMIT else "time_limit", out.raw)


    def _solve_whole(self, limits: np.ndarray, time_limit_s: float | None, gap_rel: float,
                     start: np.ndarray | None) -> SolverOutcome:
        """The compiled search on the whole problem, no LP engine and no fixing before it (the search
        fixes by reduced costs in every node): its root bound is the LP bound, searched from the last
        solve's multipliers (a sweep's neighbouring point). An outcome with no plan and a status other
        than infeasible means "not closed": the caller goes on with the LP path."""
        p = self.problem
        t0 = time.perf_counter()
        if self._whole is None:  # built once per problem: a sweep only changes the limits
            self._whole = _normalized(Core(p.cost, p.coef, p.var_group, p.group_ptr))
        core, shift, scale = self._whole
        lam, root = lagrange_bb.root_bound(core, limits, self._lam)
        t_lp = time.perf_counter()
        stats: dict[str, Any] = {"lp": LAGRANGIAN_LP, "lp_s": t_lp - t0, "fix_s": 0.0, "mip_s": 0.0,
                                 "n_vars_after_fixing": p.n_vars, "n_groups_after_fixing": p.n_groups}
        self.stats = stats
        if root == np.inf:  # no plan meets the first budget (with the fit slack)
            stats.update(closed_by="infeasible")
            return SolverOutcome(INFEASIBLE, None, None, t_lp - t0, "no plan meets the budgets (Lagrangian bound)")
        self._lam = lam
        bound = shift + scale * root
        fits = start is not None and bool(np.all(p.coef[:, start].sum(axis=1) <= limits))
        stats["lp_gap_rel"] = _rel(p, float(p.cost[start].sum()), bound) if fits else None
        nodes = lagrange_bb.MAX_NODES if time_limit_s is None else self._fast_nodes(p.n_vars, time_limit_s - (t_lp - t0))
        res = lagrange_bb.branch_lagrange(core, limits, start if fits else None, _core_gap_abs(p, gap_rel, bound, scale),
                                          lam, min(nodes, max(2, FAST_NODE_VARS // max(p.n_vars, 1))))
        stats.update(bb_s=time.perf_counter() - t_lp, bb_nodes=res.n_nodes, bb_lps=res.n_lps)
        elapsed = time.perf_counter() - t0
        self._whole_plan = res.chosen
        if not res.closed:
            stats.update(closed_by="time_limit")
            return SolverOutcome(TIME_LIMIT, None, None, elapsed, "compiled search not closed")
        if res.chosen is None:  # closed without a plan: every node held none
            stats.update(closed_by="infeasible")
            return SolverOutcome(INFEASIBLE, None, None, elapsed, "no plan meets the budgets (compiled search)")
        stats.update(closed_by="gap" if res.n_nodes == 0 else "branching")
        lower = max(bound, shift + scale * res.bound)
        if res.optimal:
            return SolverOutcome(OPTIMAL, res.chosen, float(p.cost[res.chosen].sum()), elapsed, "optimal (compiled search)")
        return SolverOutcome(WITHIN_GAP, res.chosen, lower, elapsed, "within gap_rel (compiled search)")

    @staticmethod
    def _fast_nodes(n_vars: int, remaining_s: float) -> int:
        """Nodes of the compiled search that fit its share of a time limit (~50 us a node)."""
        return max(1, int(BRANCH_TIME_SHARE * max(remaining_s, 0.0) / FAST_NODE_S))

    def _branch(self, core: Core, limits: np.ndarray, start: np.ndarray, gap_abs: float,
                remaining: float | None, lam: np.ndarray) -> BranchResult:
        """Group branching on the normalized core: compiled with Lagrangian bounds (one or two
        budget rows, numba installed), else with node LPs of the LP engine built on the core."""
        if self.fast and 1 <= len(core.coef) <= lagrange_bb.MAX_ROWS:
            nodes = min(lagrange_bb.MAX_NODES, max(2, FAST_NODE_VARS // max(core.n_vars, 1)))
            if remaining is not None:  # a time limit: a node budget that fits its share (~50 us a node)
                nodes = max(1, min(nodes, int(BRANCH_TIME_SHARE * remaining / FAST_NODE_S)))
            return lagrange_bb.branch_lagrange(core, limits, start, gap_abs, lam, nodes)
        lp_core = type(self.lp)(core)
        root = lp_core.solve(limits)
        deadline = None if remaining is None else time.perf_counter() + BRANCH_TIME_SHARE * remaining
        max_nodes = branch_nodes(self.max_nodes, core.n_vars, self.lp.in_process)
        return branch_and_bound(core, limits, lp_core, start, gap_abs, max_nodes, deadline, root)


def _target(p: Problem, bound: float, gap_rel: float) -> float | None:
    """The objective (solver units) at or below which a plan is within ``gap_rel`` of ``bound``.

    ``upper <= bound + gap_rel x (table-unit bound) / scale`` implies ``_rel(upper, bound) <=
    gap_rel`` (the table-unit objective is at least the bound). None in exact mode.
    """
    if gap_rel <= 0:
        return None
    return bound + _allowed(p, bound, gap_rel)


def _allowed(p: Problem, bound: float, gap_rel: float) -> float:
    """The absolute gap (solver units) that ``gap_rel`` allows: ``gap_rel`` x the bound in table units."""
    return gap_rel * max(p.cost_const + p.cost_scale * bound, 0.0) / p.cost_scale


def _rel(p: Problem, upper: float, lower: float) -> float:
    """Relative gap between two solver-unit objectives, measured in table units."""
    top = p.cost_const + p.cost_scale * upper
    return max(0.0, p.cost_scale * (upper - lower)) / max(abs(top), 1e-300)


def _normalized(core: Core) -> tuple[Core, float, float]:
    """The core with its objective shifted per group to a minimum of 0 and scaled to a maximum of 1.

    Returns ``(core', shift, scale)``: ``core objective = shift + scale * core' objective``
    (same argmin). Left in problem units, the core's objective differences are ~1e-6 (what
    fixing keeps is within ``UB - L`` of the bound), under the MIP engines' absolute
    tolerances (~1e-7 to 1e-6): HiGHS then declared plans ~1e-6 above the optimum optimal.
    """
    mins = np.minimum.reduceat(core.cost, core.group_ptr[:-1]) if core.n_vars else np.zeros(0)
    shifted = core.cost - mins[core.var_group]
    scale = float(shifted.max()) if core.n_vars else 1.0
    scale = scale if scale > 0 else 1.0
    return replace(core, cost=shifted / scale), float(mins.sum()), scale


#: Branching nodes allowed when every node LP is a whole solver run (CBC through PuLP, ~0.1 s).
SLOW_LP_MAX_NODES = 2

#: Share of the time limit left (when the caller set one) that group branching may use.
BRANCH_TIME_SHARE = 0.5
#: Repair and upgrade moves of the LP rounding before the compiled search (it upgrades plans itself).
FAST_INCUMBENT_MOVES = 5
#: The plan meta's ``lp`` when the compiled search's Lagrangian root bound stood in for the LP engine.
LAGRANGIAN_LP = "Lagrangian (numba)"
#: Free candidates x nodes the compiled search may spend (a node costs ~0.1-0.2 us per candidate:
#: 20 000 nodes on the 259 candidates of a 54-layer table, 250 on a 20 000-candidate core).
FAST_NODE_VARS = 5_000_000
#: Time of one node of the compiled search, to turn a time limit into a node budget (upper end).
FAST_NODE_S = 50e-6
#: Free candidates x nodes that branching may spend: a node costs a few LPs whose time grows with
#: the core, so a core of tens of thousands of candidates gets a few nodes, not minutes.
BRANCH_NODE_VARS = 300_000


def branch_nodes(max_nodes: int, n_core_vars: int, in_process: bool) -> int:
    """Nodes group branching may spend on a core of ``n_core_vars`` candidates.

    ``max_nodes``, fewer on large cores (``BRANCH_NODE_VARS / n_core_vars``, at least 2) and at
    most ``SLOW_LP_MAX_NODES`` where every LP is a solver run. A count, not a clock: the same
    table gives the same plan on any machine and at any load.
    """
    nodes = min(max_nodes, max(2, BRANCH_NODE_VARS // max(n_core_vars, 1)))
    return nodes if in_process else min(nodes, SLOW_LP_MAX_NODES)

#: Share of the allowed gap given to the core MIP; the rest absorbs the engines' tolerances.
CORE_GAP_SHARE = 0.9


def _core_gap_abs(p: Problem, gap_rel: float, bound: float, scale: float) -> float:
    """The absolute gap, in the normalized core's units, that keeps the whole plan within ``gap_rel``.

    The whole plan may be ``_allowed(bound)`` (solver units) above the optimum, and the fixed
    groups are exact, so the core MIP may stop that far above its own bound. An absolute gap
    means the same thing in CBC (``allow``) and HiGHS (``mip_abs_gap``), whatever each engine
    divides a relative gap by, and does not depend on how small the core's objective is
    (relative gaps on a core that is a sliver of the objective forced the engines to close
    far more than needed). 0 stays 0 (prove the optimum).
    """
    if gap_rel <= 0:
        return 0.0
    return CORE_GAP_SHARE * _allowed(p, bound, gap_rel) / scale
