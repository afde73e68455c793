"""Bit allocation as an ILP (PuLP + CBC, or HiGHS), proven within a gap (0: exact): ``allocate`` and ``pareto``.

Budgets are read here once (:mod:`mpsearch.allocation.budgets`: :class:`Budgets`,
:func:`resolve_budgets`), checked for feasibility from the resources alone
(:func:`check_feasible`), and uniform baseline plans are made here (:func:`uniform_plan`).

This folder is the only place that imports ``pulp`` (and ``highspy``), always lazily.
"""

from mpsearch.allocation.allocate import DEFAULT_GAP_REL, GAP_REL_RULE, allocate, check_gap_rel
from mpsearch.allocation.budgets import (Budget, Budgets, UniformBudget, check_resources, parse_budget, parse_budgets,
                                         parse_uniform, parse_value, resolve_budgets)
from mpsearch.allocation.feasible import check_feasible
from mpsearch.allocation.kbest import allocate_k_best, pick_by_evaluation
from mpsearch.allocation.pareto import ParetoFront, pareto
from mpsearch.allocation.solvers import SOLVERS
from mpsearch.allocation.target import TargetResult, allocate_for_drop, check_max_drop, resolve_drop
from mpsearch.allocation.uniform import uniform_plan

__all__ = ["Budget", "Budgets", "DEFAULT_GAP_REL", "GAP_REL_RULE", "ParetoFront", "SOLVERS", "TargetResult", "UniformBudget", "allocate", "allocate_for_drop", "allocate_k_best",
           "check_feasible", "check_max_drop", "check_gap_rel", "check_resources", "parse_budget", "parse_budgets",
           "parse_uniform", "parse_value", "pareto", "pick_by_evaluation", "resolve_drop", "resolve_budgets", "uniform_plan"]
