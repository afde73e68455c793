"""CBC through PuLP (bundled with PuLP, so always available). PuLP writes an MPS file and
runs the CBC binary for each solve; the PuLP model itself is built once and reused."""

from __future__ import annotations

import time
import warnings

import numpy as np

from mpsearch.allocation.problem import Problem
from mpsearch.allocation.solvers._base import FEAS_TOL, Backend, chosen_from_values
from mpsearch.allocation.status import OPTIMAL, TIME_LIMIT, SolverOutcome, status_from_pulp


class CbcBackend(Backend):
    """PuLP ``LpProblem`` + ``PULP_CBC_CMD``."""

    name = "cbc"

    def __init__(self, problem: Problem, msg: bool = False) -> None:
        super().__init__(problem, msg)
        import pulp

        self._pulp = pulp
        n = problem.n_vars
        self.lp = pulp.LpProblem("allocation", pulp.LpMinimize)
        if hasattr(self.lp, "add_variable"):  # PuLP >= 3.3: the model owns its variables
            self.x = [self.lp.add_variable(f"x{j}", 0, 1, pulp.LpBinary) for j in range(n)]
        else:
            self.x = [pulp.LpVariable(f"x{j}", 0, 1, pulp.LpBinary) for j in range(n)]
        self.lp.setObjective(pulp.LpAffineExpression(zip(self.x, problem.cost.tolist())))
        ptr = problem.group_ptr.tolist()
        for g in range(problem.n_groups):
            expr = pulp.LpAffineExpression((self.x[j], 1.0) for j in range(ptr[g], ptr[g + 1]))
            self.lp.addConstraint(pulp.LpConstraint(expr, pulp.LpConstraintEQ, rhs=1.0), name=f"g{g}")
        self.rows = []
        for r, coef in enumerate(problem.coef):
            nz = np.nonzero(coef)[0]  # shifted rows are 0 at each group's cheapest candidate
            expr = pulp.LpAffineExpression(zip([self.x[j] for j in nz.tolist()], coef[nz].tolist()))
            con = pulp.LpConstraint(expr, pulp.LpConstraintLE, rhs=float(n))  # n: never binding
            self.lp.addConstraint(con, name=f"b{r}")
            self.rows.append(con)

    def set_limits(self, scaled_limits: np.ndarray) -> None:
        for con, limit in zip(self.rows, np.asarray(scaled_limits, dtype=np.float64).tolist()):
            con.changeRHS(limit)

    def solve(self, time_limit_s: float | None, gap_rel: float, start: np.ndarray | None = None) -> SolverOutcome:
        pulp = self._pulp
        if start is not None:
            on = np.zeros(self.problem.n_vars, dtype=bool)
            on[start] = True
            for v, val in zip(self.x, on.tolist()):
                v.setInitialValue(1 if val else 0)
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # PuLP 3.3 announces that 4.0 unbundles CBC; it is bundled here
            warnings.simplefilter("ignore", DeprecationWarning)
            solver = pulp.PULP_CBC_CMD(msg=self.msg, timeLimit=time_limit_s, gapRel=gap_rel, gapAbs=0.0,
                                       warmStart=start is not None,
                                       options=[f"primalTolerance {FEAS_TOL}", f"integerTolerance {FEAS_TOL}",
                                                # CBC 2.10.3 preprocessing returned wrong optima on
                                                # small tables (tests/allocation catch it): off.
                                                "preprocess off"])
            self.lp.solve(solver)
        elapsed = time.perf_counter() - t0
        status = status_from_pulp(self.lp.status, self.lp.sol_status, gap_rel)
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
