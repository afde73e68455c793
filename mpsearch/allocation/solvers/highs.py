"""HiGHS through its own Python binding ``highspy`` (optional: ``pip install highspy``).

The model is handed over as column-wise arrays in one call (no per-variable Python objects),
and kept between solves: a new limit only changes a row bound.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Iterator

import numpy as np

from mpsearch.allocation.problem import Problem
from mpsearch.allocation.solvers._base import FEAS_TOL, Backend, chosen_from_values
from mpsearch.allocation.status import OPTIMAL, SolverOutcome, status_from_highs
from mpsearch.errors import ConfigError


class HighsBackend(Backend):
    """``highspy.Highs`` with the model passed as a ``HighsLp``."""

    name = "highs"

    def __init__(self, problem: Problem, msg: bool = False) -> None:
        super().__init__(problem, msg)
        try:
            import highspy
        except ImportError:
            raise ConfigError("solver 'highs' must have the highspy package installed (pip install highspy), "
                              "but it was not found; use solver='cbc'") from None
        self._hs = highspy
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
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n
        with _quiet_stdout(not msg):  # the first Highs() prints a banner from C++
            self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", bool(msg))
        for key in ("primal_feasibility_tolerance", "mip_feasibility_tolerance"):
            self.h.setOptionValue(key, FEAS_TOL)
        self.h.setOptionValue("mip_abs_gap", 0.0)
        self.h.passModel(lp)
        self._budget_rows = np.arange(n_groups, n_groups + n_rows, dtype=np.int32)

    def set_limits(self, scaled_limits: np.ndarray) -> None:
        limits = np.asarray(scaled_limits, dtype=np.float64)
        self.h.changeRowsBounds(len(limits), self._budget_rows, np.full(len(limits), -self._hs.kHighsInf), limits)

    def solve(self, time_limit_s: float | None, gap_rel: float, start: np.ndarray | None = None) -> SolverOutcome:
        h = self.h
        h.setOptionValue("mip_rel_gap", float(gap_rel))
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
        status = status_from_highs(raw_name, has_solution, gap_rel, info.mip_gap)
        chosen = chosen_from_values(self.problem, np.asarray(h.getSolution().col_value)) if has_solution else None
        bound = float(info.mip_dual_bound) if has_solution and np.isfinite(info.mip_dual_bound) else None
        if status == OPTIMAL and chosen is not None:
            bound = float(self.problem.cost[chosen].sum())
        return SolverOutcome(status, chosen, bound, elapsed, model_status)


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
