"""CBC through PuLP (bundled with PuLP, so always available). PuLP writes an MPS file and
runs the CBC binary for each solve; the PuLP model itself is built once and reused. The LP
relaxation (:class:`CbcLp`) is here too, for machines without highspy."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from mpsearch.allocation.problem import Core, Problem
from mpsearch.allocation.solvers._base import (FEAS_TOL, LP_ERROR, LP_INFEASIBLE, LP_OPTIMAL, Backend, LpEngine,
                                               LpResult, chosen_from_values)
from mpsearch.allocation.status import OPTIMAL, TIME_LIMIT, SolverOutcome, status_from_pulp


class CbcBackend(Backend):
    """PuLP ``LpProblem`` + ``PULP_CBC_CMD``."""

    name = "cbc"

    def __init__(self, problem: Problem | Core, msg: bool = False) -> None:
        super().__init__(problem, msg)
        import pulp

        self._pulp = pulp
        self.lp, self.x, self.rows = _build(problem, pulp.LpBinary)

    def set_limits(self, scaled_limits: np.ndarray) -> None:
        for con, limit in zip(self.rows, np.asarray(scaled_limits, dtype=np.float64).tolist()):
            con.changeRHS(limit)

    def solve(self, time_limit_s: float | None, gap_rel: float, start: np.ndarray | None = None,
              gap_abs: float = 0.0) -> SolverOutcome:
        pulp = self._pulp
        if start is not None:
            on = np.zeros(self.problem.n_vars, dtype=bool)
            on[start] = True
            for v, val in zip(self.x, on.tolist()):
                v.setInitialValue(1 if val else 0)
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # PuLP 3.3 announces that 4.0 unbundles CBC; it is bundled here
            warnings.simplefilter("ignore", DeprecationWarning)
            solver = pulp.PULP_CBC_CMD(msg=self.msg, timeLimit=time_limit_s, gapRel=gap_rel, gapAbs=gap_abs,
                                       warmStart=start is not None,
                                       options=[f"primalTolerance {FEAS_TOL}", f"integerTolerance {FEAS_TOL}",
                                                # CBC 2.10.3 preprocessing returned wrong optima on
                                                # small tables (tests/allocation catch it): off.
                                                "preprocess off",
                                                # CBC's defaults (cutoff increment 1e-5, dual
                                                # tolerance 1e-7, absolute) declared plans
                                                # "optimal" 1e-5..1e-4 (relative) above the optimum
                                                # on tables with near-ties: tighten both.
                                                "increment 1e-12", f"dualTolerance {FEAS_TOL / 10}"])
            self.lp.solve(solver)
        elapsed = time.perf_counter() - t0
        status = status_from_pulp(self.lp.status, self.lp.sol_status, max(gap_rel, gap_abs))
        has_solution = self.lp.sol_status in (pulp.constants.LpSolutionOptimal, pulp.constants.LpSolutionIntegerFeasible)
        chosen = None
        if has_solution:
            values = np.array([v.varValue or 0.0 for v in self.x])
            chosen = chosen_from_values(self.problem, values)
        bound = None
        if status == OPTIMAL and chosen is not None:
            bound = float(self.problem.cost[chosen].sum())
        raw = f"{pulp.LpStatus[self.lp.status]} / {pulp.LpSolution[self.lp.sol_status]}"
        if status == TIME_LIMIT and chosen is None:
            raw += " (no plan found in time)"
        return SolverOutcome(status, chosen, bound, elapsed, raw)


class CbcLp(LpEngine):
    """The LP relaxation solved by CBC through PuLP (used only where highspy is missing).

    Every solve writes the whole model for a fresh CBC process: slower than HiGHS, but exact.
    """

    name = "cbc"
    in_process = False

    def __init__(self, problem: Problem | Core) -> None:
        super().__init__(problem)
        import pulp

        self._pulp = pulp
        self.lp, self.x, self.rows = _build(problem, pulp.LpContinuous)

    def solve(self, scaled_limits: np.ndarray) -> LpResult:
        for con, limit in zip(self.rows, np.asarray(scaled_limits, dtype=np.float64).tolist()):
            con.changeRHS(limit)
        return self._run()

    def solve_bounded(self, upper: np.ndarray) -> LpResult:
        for v, u in zip(self.x, np.asarray(upper, dtype=np.float64).tolist()):
            v.upBound = u
        return self._run()

    def _run(self) -> LpResult:
        pulp = self._pulp
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.lp.solve(pulp.PULP_CBC_CMD(msg=False, options=[f"primalTolerance {FEAS_TOL}"]))
        elapsed = time.perf_counter() - t0
        if self.lp.status == pulp.constants.LpStatusInfeasible:
            return LpResult(LP_INFEASIBLE, None, None, elapsed)
        if self.lp.status != pulp.constants.LpStatusOptimal:
            return LpResult(LP_ERROR, None, None, elapsed)
        x = np.array([v.varValue or 0.0 for v in self.x])
        # CBC's duals (pi) of <= rows in a minimization are <= 0: lambda = -pi (missing -> 0, still a bound).
        lam = np.array([max(0.0, -(con.pi or 0.0)) for con in self.rows])
        return LpResult(LP_OPTIMAL, x, lam, elapsed)


def _build(problem: Problem | Core, category: str) -> tuple[Any, list[Any], list[Any]]:
    """``(LpProblem, variables, budget constraints)``: one ``== 1`` row per group, budget rows unbounded."""
    import pulp

    n = problem.n_vars
    lp = pulp.LpProblem("allocation", pulp.LpMinimize)
    if hasattr(lp, "add_variable"):  # PuLP >= 3.3: the model owns its variables
        x = [lp.add_variable(f"x{j}", 0, 1, category) for j in range(n)]
    else:
        x = [pulp.LpVariable(f"x{j}", 0, 1, category) for j in range(n)]
    lp.setObjective(pulp.LpAffineExpression(zip(x, problem.cost.tolist())))
    ptr = problem.group_ptr.tolist()
    for g in range(problem.n_groups):
        expr = pulp.LpAffineExpression((x[j], 1.0) for j in range(ptr[g], ptr[g + 1]))
        lp.addConstraint(pulp.LpConstraint(expr, pulp.LpConstraintEQ, rhs=1.0), name=f"g{g}")
    rows = []
    for r, coef in enumerate(problem.coef):
        nz = np.nonzero(coef)[0]  # shifted rows are 0 at each group's cheapest candidate
        expr = pulp.LpAffineExpression(zip([x[j] for j in nz.tolist()], coef[nz].tolist()))
        con = pulp.LpConstraint(expr, pulp.LpConstraintLE, rhs=float(n))  # n: never binding
        lp.addConstraint(con, name=f"b{r}")
        rows.append(con)
    return lp, x, rows
