"""Explorer base class and registry.

Contract every explorer keeps (checked by :mod:`mpsearch.testing.explorers`):

* ``ask() -> Trial | None``: a :class:`Trial` ``(id, plan)`` to evaluate, or None once the
  explorer's trial budget (``n_trials``) is used up. Every plan it hands out covers every
  layer of the table, meets every budget (see :mod:`mpsearch.explorers._space` for the
  repair step), gives tied layers one candidate and pinned layers their pin.
* ``tell(trial_id, metrics, failed=False)``: report the evaluation of an asked trial.
  ``metrics`` maps metric names to floats; anything the table knows (``omega`` and every
  resource total) is filled in from the table when missing, so ``tell(id, {})`` is valid
  for the omega proxy. ``failed=True`` (metrics may be None) records a failed evaluation;
  it counts as a used evaluation and never raises. Telling an id that was not asked, or
  twice, raises :class:`~mpsearch.errors.ConfigError`.
* ``evaluations()``, ``best()``, ``result()``: what was told so far.
* The caller owns the loop (DESIGN convention 6); :func:`mpsearch.explorers.search` is
  the ready-made loop. The same seed and the same told metrics give the same plans.
* Constructors store and validate; they import their engine (optuna, torch) lazily.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Mapping, Sequence

from mpsearch.core.checks import check_int, check_number
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.core.types import Layer
from mpsearch.errors import ConfigError, rule_error, unknown_name
from mpsearch.explorers._result import Evaluation, SearchResult, Trial, parse_objectives, pareto_front
from mpsearch.explorers._local import LocalSearch, is_local_turn
from mpsearch.explorers._space import SearchSpace


class Explorer(ABC):
    """Base of every explorer: holds the search space, objectives and told trials.

    Args:
        table: the cost table to search.
        budgets: resource -> limit (number, budget string, or a :class:`~mpsearch.allocation.Budgets`;
            see :func:`mpsearch.explorers._space.absolute_budgets`). May be empty for
            multi-objective searches.
        objectives: ``{"metric": "minimize"|"maximize"}`` or metric names (minimized);
            default ``omega`` minimized. Several objectives make a multi-objective search.
        pins: layer name -> candidate (``"w8a8"``, ``(8, 8)``, LayerBits).
        layers: optional :class:`~mpsearch.core.types.Layer` list (features for RL).
        seed: random seed; same seed, same told metrics -> same plans.
        n_trials: evaluations after which ``ask`` returns None (None: unbounded).
        repair: repair strategy name (``"greedy"`` or ``"haq"``).
        local_search: share of the trials after the explorer's warm-up that go to local
            improvement of the best plan so far (:mod:`mpsearch.explorers._local`), taken only
            while an untried improving neighbour exists (else the explorer's own proposal);
            0 turns it off. Single-objective searches only. Every such plan is a counted trial.
    """

    name: ClassVar[str] = ""
    #: whether several processes may share one explorer's storage (``n_workers > 1``)
    supports_workers: ClassVar[bool] = False

    def __init__(self, table: CostTable, *, budgets: Any = None, objectives: Any = None,
                 pins: Mapping[str, Any] | None = None, layers: Sequence[Layer] | None = None,
                 seed: int = 0, n_trials: int | None = None, repair: str = "greedy",
                 local_search: float = 0.5) -> None:
        if not isinstance(table, CostTable):
            raise rule_error(f"{self.name} explorer", "table", "a CostTable", type(table).__name__)
        where = f"{self.name} explorer"
        check_int(n_trials, where, "n_trials", min=1, allow_none=True)
        check_int(seed, where, "seed")
        check_number(local_search, where, "local_search", min=0, max=1)
        self.table = table
        self.space = SearchSpace(table, budgets, pins, repair)
        self.local_search = float(local_search)
        self.local = LocalSearch(self.space)
        self.objectives = parse_objectives(objectives)
        self.layers = list(layers) if layers is not None else None
        self.seed = seed
        self.n_trials = n_trials
        self._pending: dict[int, BitPlan] = {}
        self._history: list[Evaluation] = []

    # -- the contract ------------------------------------------------------------------------
    @abstractmethod
    def ask(self) -> Trial | None:
        """Next plan to evaluate, or None when ``n_trials`` evaluations are used up."""

    @abstractmethod
    def tell(self, trial_id: int, metrics: Mapping[str, float] | None, failed: bool = False) -> None:
        """Report the metrics of an asked trial (or that its evaluation failed)."""

    # -- shared helpers ----------------------------------------------------------------------
    @property
    def budgets(self) -> dict[str, float]:
        return dict(self.space.budgets)

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def _local_proposal(self, n_after_warmup: int, incumbent: Sequence[int] | None,
                        tried: Sequence[tuple[int, ...]]) -> list[int] | None:
        """A local improvement choice for this trial, or None (not its turn, or nothing to try).

        ``n_after_warmup``: trials asked since the warm-up ended (negative: still warming up).
        """
        if (self.local_search <= 0 or self.is_multi_objective or incumbent is None or n_after_warmup < 0
                or not self.space.n_units or not is_local_turn(n_after_warmup, self.local_search)):
            return None
        return self.local.propose(incumbent, tried)

    def proxy_metrics(self, plan: BitPlan) -> dict[str, float]:
        """``omega`` and every resource total of a plan, from the table."""
        return self.table.totals(self.table.rows_for_plan(plan))

    def _take_pending(self, trial_id: int) -> BitPlan:
        try:
            return self._pending.pop(int(trial_id))
        except (KeyError, TypeError, ValueError):
            raise rule_error(f"{self.name} explorer", "trial_id", "an id returned by ask() and not told yet",
                             trial_id) from None

    def _complete(self, plan: BitPlan, metrics: Mapping[str, float] | None, failed: bool) -> dict[str, float]:
        """Proxy metrics overlaid with the caller's; checks objectives are present."""
        merged = self.proxy_metrics(plan)
        for k, v in (metrics or {}).items():
            try:
                merged[str(k)] = float(v)
            except (TypeError, ValueError):
                if not failed:
                    raise rule_error(f"{self.name} explorer", f"metrics.{k}", "a number", v) from None
        if not failed:
            for name, _ in self.objectives:
                if name not in merged:
                    raise unknown_name("metric", name, merged, f"{self.name} explorer: tell() objectives")
        return merged

    def evaluations(self) -> list[Evaluation]:
        """Every told trial so far, in trial-id order."""
        return sorted(self._history, key=lambda e: e.trial_id)

    def best(self) -> Evaluation | None:
        """Best successful evaluation on the first objective (ties: lowest trial id)."""
        name, direction = self.objectives[0]
        sign = 1.0 if direction == "minimize" else -1.0
        ok = [e for e in self.evaluations() if not e.failed]
        return min(ok, key=lambda e: (sign * e.metrics[name], e.trial_id)) if ok else None

    def meta(self) -> dict[str, Any]:
        """Plain data describing this explorer's settings (for SearchResult.meta)."""
        return {"seed": self.seed, "n_trials": self.n_trials, "repair": self.space.repair_name,
                "local_search": self.local_search}

    def result(self, wall_time_s: float = 0.0) -> SearchResult:
        """Everything told so far as a :class:`SearchResult`."""
        evals = self.evaluations()
        best = self.best()
        pareto = tuple(e.plan for e in pareto_front(evals, self.objectives)) if self.is_multi_objective else ()
        return SearchResult(explorer=self.name, objectives=self.objectives, budgets=self.budgets,
                            best=None if best is None else best.plan,
                            best_metrics={} if best is None else dict(best.metrics),
                            evaluations=tuple(evals), pareto=pareto, n_evaluations=len(evals),
                            n_failed=sum(e.failed for e in evals), wall_time_s=float(wall_time_s), meta=self.meta())


#: Explorer name -> "module:Class" (resolved on use so that importing stays light).
EXPLORERS: dict[str, str] = {
    "optuna": "mpsearch.explorers.optuna_explorer:OptunaExplorer",
    "rl": "mpsearch.explorers.rl_explorer:RLExplorer",
}


def explorer_class(name: str) -> type[Explorer]:
    """The explorer class registered under ``name``."""
    if name not in EXPLORERS:
        raise unknown_name("explorer", name, EXPLORERS, "search")
    module, cls = EXPLORERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_explorer(name: str, table: CostTable, **options: Any) -> Explorer:
    """Build the explorer registered under ``name`` (``"optuna"``, ``"rl"``) for ``table``."""
    try:
        return explorer_class(name)(table, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ConfigError(f"explorer {name!r}: {exc}") from None
        raise
