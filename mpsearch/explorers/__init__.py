"""Explorers: search bit plans by ask/tell (Optuna, RL) beside the exact ILP of allocation/.

    from mpsearch.explorers import search
    result = search(table, explorer="optuna", budgets={"size_bytes": 120_000}, n_trials=200)
"""

from mpsearch.explorers._base import EXPLORERS, Explorer, explorer_class, get_explorer
from mpsearch.explorers._result import Evaluation, SearchResult, Trial, pareto_front
from mpsearch.explorers._search import run_loop, search
from mpsearch.explorers._space import REPAIRS, SearchSpace, absolute_budgets

__all__ = [
    "EXPLORERS",
    "REPAIRS",
    "Evaluation",
    "Explorer",
    "SearchResult",
    "SearchSpace",
    "Trial",
    "absolute_budgets",
    "explorer_class",
    "get_explorer",
    "pareto_front",
    "run_loop",
    "search",
]
