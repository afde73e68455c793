"""Bit allocation as an ILP (PuLP + CBC, or HiGHS), proven within a gap (0: exact): ``allocate`` and ``pareto``.

This folder is the only place that imports ``pulp`` (and ``highspy``), always lazily.
"""

from mpsearch.allocation.allocate import DEFAULT_GAP_REL, GAP_REL_RULE, allocate, check_gap_rel
from mpsearch.allocation.budgets import Budget, parse_budget, parse_budgets, parse_value
from mpsearch.allocation.pareto import ParetoFront, pareto
from mpsearch.allocation.solvers import SOLVERS

__all__ = ["Budget", "DEFAULT_GAP_REL", "GAP_REL_RULE", "ParetoFront", "SOLVERS", "allocate", "check_gap_rel", "parse_budget", "parse_budgets", "parse_value", "pareto"]
