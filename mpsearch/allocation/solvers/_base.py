"""Contract of a solver backend (one module per engine; ``SOLVERS`` maps names to them).

A backend is built once from a :class:`~mpsearch.allocation.problem.Problem` and then solved
any number of times, changing only the budget limits in between (``pareto`` sweeps one limit
this way without rebuilding the model). It must:

* model one binary variable per ``Problem`` variable, one ``== 1`` row per group, and one
  ``<=`` row per budgeted resource (``problem.coef``), minimizing ``problem.cost``;
* start with every budget row unbounded until :meth:`set_limits` is called;
* in :meth:`solve`, honour ``time_limit_s`` (None = none), ``gap_rel`` and ``gap_abs`` (stop
  once the incumbent is within either of the bound; both 0 = prove the optimum), use ``start`` (chosen variable per group) as a MIP start when given and feasible,
  and return a :class:`~mpsearch.allocation.status.SolverOutcome` whose status comes from the
  functions in :mod:`mpsearch.allocation.status`;
* never print unless ``msg`` is true; import its engine lazily (inside ``__init__``).

A backend reads only ``n_vars, n_groups, cost, coef, var_group, group_ptr`` of its problem, so
it also takes the small :class:`~mpsearch.allocation.problem.Core` left after reduced-cost fixing.

An :class:`LpEngine` solves the LP relaxation (variables in [0, 1]) of a full ``Problem`` for
the bound and budget duals that :mod:`mpsearch.allocation.reduce` needs; it is kept between
solves too (a new limit re-solves from the previous basis where the engine can).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mpsearch.allocation.problem import Core, Problem
from mpsearch.allocation.status import SolverOutcome

#: Feasibility and integrality tolerances given to the engines (rows are scaled to max 1).
FEAS_TOL = 1e-9

LP_OPTIMAL, LP_INFEASIBLE, LP_ERROR = "optimal", "infeasible", "error"


class Backend(ABC):
    """One engine holding one built model."""

    name: ClassVar[str]

    def __init__(self, problem: Problem | Core, msg: bool = False) -> None:
        self.problem = problem
        self.msg = msg

    @abstractmethod
    def set_limits(self, scaled_limits: np.ndarray) -> None:
        """Set the right-hand side of every budget row (solver units, see Problem.scale_limits)."""

    @abstractmethod
    def solve(self, time_limit_s: float | None, gap_rel: float, start: np.ndarray | None = None,
              gap_abs: float = 0.0) -> SolverOutcome:
        """Solve with the current limits; ``gap_abs`` is in objective units."""


@dataclass(frozen=True)
class LpResult:
    """One LP solve: status (``LP_*``), values ``(n_vars,)`` and budget duals ``lam >= 0`` ``(n_rows,)``
    in solver units (None unless optimal), and the engine's wall time."""

    status: str
    x: np.ndarray | None
    lam: np.ndarray | None
    solve_time_s: float


class LpEngine(ABC):
    """The LP relaxation of one problem, re-solved for changing budget limits.

    It also re-solves with some variables held at 0 (:meth:`solve_bounded`): the node LPs of
    :mod:`mpsearch.allocation.branching`. ``in_process`` says whether a re-solve is cheap
    (in-process, from the last basis: HiGHS) or costs a whole solver run (CBC through PuLP: a
    file and a process per LP), which decides how many nodes branching may spend.
    """

    name: ClassVar[str]
    in_process: ClassVar[bool] = False

    def __init__(self, problem: Problem | Core) -> None:
        self.problem = problem

    @abstractmethod
    def solve(self, scaled_limits: np.ndarray) -> LpResult:
        """Solve with these budget limits (solver units)."""

    @abstractmethod
    def solve_bounded(self, upper: np.ndarray) -> LpResult:
        """Re-solve with the last limits and variable ``j`` in ``[0, upper[j]]`` (0 or 1)."""


def chosen_from_values(problem: Problem | Core, values: np.ndarray) -> np.ndarray:
    """The variable with the largest value in each group (binary values up to tolerance)."""
    order = np.lexsort((-values, problem.var_group))
    return order[problem.group_ptr[:-1]]
