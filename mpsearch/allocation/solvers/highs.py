"""HiGHS through its own Python binding ``highspy`` (optional: ``pip install highspy``).

The model is handed over as column-wise arrays in one call (no per-variable Python objects),
and kept between solves: a new limit only changes a row bound. Both the MIP backend and the
LP relaxation (which ``allocate`` uses for its bound and duals, whatever the MIP solver) live here.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Iterator

import numpy as np

from mpsearch.allocation.problem import Core, Problem
from mpsearch.allocation.solvers._base import (FEAS_TOL, LP_ERROR, LP_INFEASIBLE, LP_OPTIMAL, Backend, LpEngine,
                                               LpResult, chosen_from_values)
from mpsearch.allocation.status import OPTIMAL, SolverOutcome, status_from_highs
from mpsearch.errors import ConfigError


class HighsBackend(Backend):
    """``highspy.Highs`` with the model passed as a ``HighsLp``."""

    name = "highs"

    def __init__(self, problem: Problem, msg: bool = False) -> None:
        super().__init__(problem, msg)
        self._hs, self.h, self._budget_rows = _build(problem, msg, integer=True)

    def set_limits(self, scaled_limits: np.ndarray) -> None:
        _set_limits(self._hs, self.h, self._budget_rows, scaled_limits)

    def solve(self, time_limit_s: float | None, gap_rel: float, start: np.ndarray | None = None,
              gap_abs: float = 0.0) -> SolverOutcome:
        h = self.h
        h.setOptionValue("mip_rel_gap", float(gap_rel))
        h.setOptionValue("mip_abs_gap", float(gap_abs))
        h.setOptionValue("time_limit", float(time_limit_s) if time_limit_s is not None else self._hs.kHighsInf)
        if start is not None:
            sol = self._hs.HighsSolution()
            values = np.zeros(self.problem.n_vars)
            values[start] = 1.0
            sol.col_value = values
            h.setSolution(sol)
        t0 = time.perf_counter()
        h.run()
        elapsed = time.perf_counter() - t0
        info = h.getInfo()
        has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
        model_status = h.modelStatusToString(h.getModelStatus())
        raw_name = str(h.getModelStatus()).split(".")[-1]
        status = status_from_highs(raw_name, has_solution, max(gap_rel, gap_abs), info.mip_gap)
        chosen = chosen_from_values(self.problem, np.asarray(h.getSolution().col_value)) if has_solution else None
        bound = float(info.mip_dual_bound) if has_solution and np.isfinite(info.mip_dual_bound) else None
        if status == OPTIMAL and chosen is not None:
            bound = float(self.problem.cost[chosen].sum())
        return SolverOutcome(status, chosen, bound, elapsed, model_status)


class HighsLp(LpEngine):
    """The LP relaxation in HiGHS; kept between solves, so a new limit re-solves from the last basis."""

    name = "highs"
    in_process = True

    def __init__(self, problem: Problem | Core) -> None:
        super().__init__(problem)
        self._hs, self.h, self._budget_rows = _build(problem, False, integer=False)
        self._cols = np.arange(problem.n_vars, dtype=np.int32)

    def solve(self, scaled_limits: np.ndarray) -> LpResult:
        _set_limits(self._hs, self.h, self._budget_rows, scaled_limits)
        return self._run()

    def solve_bounded(self, upper: np.ndarray) -> LpResult:
        n = self.problem.n_vars
        self.h.changeColsBounds(n, self._cols, np.zeros(n), np.asarray(upper, dtype=np.float64))
        return self._run()

    def _run(self) -> LpResult:
        t0 = time.perf_counter()
        self.h.run()
        elapsed = time.perf_counter() - t0
        status = str(self.h.getModelStatus()).split(".")[-1]
        if status == "kInfeasible":
            return LpResult(LP_INFEASIBLE, None, None, elapsed)
        if status != "kOptimal":
            return LpResult(LP_ERROR, None, None, elapsed)
        sol = self.h.getSolution()
        # HiGHS row duals of a minimization are <= 0 on binding <= rows: lambda = -dual.
        lam = np.maximum(0.0, -np.asarray(sol.row_dual)[self._budget_rows])
        return LpResult(LP_OPTIMAL, np.asarray(sol.col_value), lam, elapsed)


def _build(problem: Problem | Core, msg: bool, integer: bool) -> tuple[Any, Any, np.ndarray]:
    """``(highspy, Highs, budget row indices)`` holding the problem (binary or relaxed to [0, 1])."""
    try:
        import highspy
    except ImportError:
        raise ConfigError("solver 'highs' must have the highspy package installed (pip install highspy), "
                          "but it was not found; use solver='cbc'") from None
    n, n_groups, n_rows = problem.n_vars, problem.n_groups, len(problem.coef)
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = n_groups + n_rows
    lp.col_cost_ = problem.cost
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.ones(n)
    lp.row_lower_ = np.concatenate([np.ones(n_groups), np.full(n_rows, -highspy.kHighsInf)])
    lp.row_upper_ = np.concatenate([np.ones(n_groups), np.full(n_rows, highspy.kHighsInf)])
    # Column j holds: 1 in its group row, then its coefficient in each budget row.
    index = np.empty((n, 1 + n_rows), dtype=np.int32)
    index[:, 0] = problem.var_group
    index[:, 1:] = n_groups + np.arange(n_rows)[None]
    value = np.empty((n, 1 + n_rows))
    value[:, 0] = 1.0
    value[:, 1:] = problem.coef.T
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, n * (1 + n_rows) + 1, 1 + n_rows, dtype=np.int32)
    lp.a_matrix_.index_ = index.ravel()
    lp.a_matrix_.value_ = value.ravel()
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    with _quiet_stdout(not msg):  # the first Highs() prints a banner from C++
        h = highspy.Highs()
    h.setOptionValue("output_flag", bool(msg))
    for key in ("primal_feasibility_tolerance", "mip_feasibility_tolerance"):
        h.setOptionValue(key, FEAS_TOL)
    h.setOptionValue("mip_abs_gap", 0.0)
    h.passModel(lp)
    return highspy, h, np.arange(n_groups, n_groups + n_rows, dtype=np.int32)


def _set_limits(hs: Any, h: Any, rows: np.ndarray, scaled_limits: np.ndarray) -> None:
    limits = np.asarray(scaled_limits, dtype=np.float64)
    h.changeRowsBounds(len(limits), rows, np.full(len(limits), -hs.kHighsInf), limits)


@contextlib.contextmanager
def _quiet_stdout(quiet: bool) -> Iterator[None]:
    """Send file descriptor 1 to /dev/null (C++ prints bypass sys.stdout)."""
    if not quiet:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
