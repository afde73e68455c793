"""Solver outcomes in words: every backend maps its own codes here, and nowhere else.

Words used in plans and results:

* ``"optimal"``: the solver proved the plan optimal (gap 0).
* ``"within_gap"``: proved within the requested relative gap ``gap_rel`` > 0, not proven optimal.
* ``"time_limit"``: stopped by the time limit; a plan is returned if one was found.
* ``"infeasible"``: no assignment meets the budgets.
* ``"error"``: anything else (unbounded, solver failure); never expected for this model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPTIMAL, WITHIN_GAP, TIME_LIMIT, INFEASIBLE, ERROR = "optimal", "within_gap", "time_limit", "infeasible", "error"


@dataclass(frozen=True)
class SolverOutcome:
    """What one solve gave back, in solver space.

    Attributes:
        status: one of the words above.
        chosen: the chosen variable of each group, or None when no solution was found.
        bound: a proven lower bound on the (scaled, shifted) objective, where known.
        solve_time_s: wall time of the solver call alone.
        raw: the solver's own status, for the plan's meta.
    """

    status: str
    chosen: np.ndarray | None
    bound: float | None
    solve_time_s: float
    raw: str


def status_from_pulp(status: int, sol_status: int, gap_rel: float) -> str:
    """Map PuLP's ``(LpProblem.status, LpProblem.sol_status)`` to a status word.

    PuLP reports a time-limited CBC run that found a plan as status 1 with sol_status 2
    (``LpSolutionIntegerFeasible``), and one that found none as ``(0, 0)``.
    """
    import pulp

    c = pulp.constants
    if status == c.LpStatusOptimal and sol_status == c.LpSolutionOptimal:
        return OPTIMAL if gap_rel <= 0 else WITHIN_GAP
    if sol_status == c.LpSolutionIntegerFeasible or status == c.LpStatusNotSolved:
        return TIME_LIMIT
    if status == c.LpStatusInfeasible or sol_status == c.LpSolutionInfeasible:
        return INFEASIBLE
    return ERROR


def status_from_highs(model_status: str, has_solution: bool, gap_rel: float, mip_gap: float) -> str:
    """Map a HiGHS model status name (``"kOptimal"``, ``"kTimeLimit"``...) to a status word."""
    if model_status == "kOptimal":
        return OPTIMAL if gap_rel <= 0 or mip_gap <= 0 else WITHIN_GAP
    if model_status == "kInfeasible":
        return INFEASIBLE
    if model_status in ("kTimeLimit", "kInterrupt", "kIterationLimit", "kSolutionLimit") or has_solution:
        return TIME_LIMIT
    return ERROR
