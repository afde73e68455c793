"""Accuracy-target mode (#15, item 4): the smallest (or fastest, or fewest-BOPs) plan whose real
validation metric stays within ``max_drop`` of float.

A separate verb, not an ``allocate`` argument: ``allocate`` decides from the cost table alone
and returns one :class:`BitPlan`; this one needs an evaluation callable and a float metric,
spends real evaluations, and returns what it measured (:class:`TargetResult`) — one verb per
public function.

Method: the exact Pareto frontier of total omega against ``minimize`` (:func:`pareto`, every
point a proven ILP optimum) is searched by binary search over its points, ascending in the
resource, each probe evaluated through ``evaluate`` (and cached). Binary search assumes the
metric falls as the resource shrinks along the frontier; it returns the smallest point it
proved to meet the drop on validation, so the result always meets it, even where the metric
is not monotone. When even the largest point misses, :class:`InfeasibleBudgetError` names the
best drop that was reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from mpsearch.allocation.allocate import DEFAULT_GAP_REL
from mpsearch.allocation.budgets import parse_value
from mpsearch.allocation.pareto import pareto
from mpsearch.core.checks import check_bool, check_int, check_number
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.core.profile import Rules
from mpsearch.errors import ConfigError, InfeasibleBudgetError


@dataclass(frozen=True)
class TargetResult:
    """What accuracy-target mode chose and measured.

    Attributes:
        plan: the chosen plan (smallest ``minimize`` total proven to meet the drop).
        metric, drop: its validation metric and drop from float (metric units, > 0 = worse).
        max_drop: the allowed drop (metric units, after resolving a percentage).
        float_metric: the float model's validation metric.
        minimize: the resource minimized.
        evaluated: ``(resource total, validation metric)`` of every probed frontier point, in probe order.
        n_frontier: frontier points searched.
        test_metric, test_drop: the plan's metric on test data and its drop from ``float_test_metric``
            (None without ``evaluate_test``).
    """

    plan: BitPlan
    metric: float
    drop: float
    max_drop: float
    float_metric: float
    minimize: str
    evaluated: tuple[tuple[float, float], ...]
    n_frontier: int
    test_metric: float | None = None
    test_drop: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: resource total, validation drop against the allowed one, test drop beside it."""
        test = "" if self.test_drop is None else f", test drop {self.test_drop:.4g} (metric {self.test_metric:.4g})"
        return (f"{self.minimize} {self.plan.totals[self.minimize]:.6g}: validation drop {self.drop:.4g} <= "
                f"{self.max_drop:.4g} (metric {self.metric:.4g}, float {self.float_metric:.4g}){test}; "
                f"{len(self.evaluated)} of {self.n_frontier} frontier points evaluated")


#: What a max_drop must be, in words.
DROP_RULE = "a drop >= 0 in metric units (0.005) or a percentage of the float metric ('0.5%')"


def resolve_drop(max_drop: float | str, float_metric: float, where: str = "allocate_for_drop",
                 key: str = "max_drop") -> float:
    """``max_drop`` in metric units: a number as is, ``"0.5%"`` as 0.5 % of ``|float_metric|``."""
    try:
        value, relative = parse_value(max_drop, where, key)  # the one reader of "0.5%" (allocation/budgets.py)
    except ConfigError:  # parse_value words its rule for budgets; a drop has its own
        raise ConfigError(f"{where}: {key} must be {DROP_RULE}, but got {max_drop!r}") from None
    if relative:
        value *= abs(float(float_metric))
    return float(check_number(value, where, key, min=0, rule=DROP_RULE))


def check_max_drop(value: Any, where: str, key: str = "max_drop") -> float | str:
    """``value`` if it reads as a drop (a number >= 0 or a percentage); a ConfigError naming ``where``/``key`` else."""
    resolve_drop(value, 1.0, where, key)
    return value


def allocate_for_drop(table: CostTable, max_drop: float | str, evaluate: Callable[[BitPlan], float],
                      float_metric: float, *, minimize: str = "size_bytes", higher_is_better: bool = True,
                      n_points: int = 20, other_budgets: Mapping[str, Any] | Iterable[Any] | None = None,
                      pins: Mapping[str, Any] | None = None, rules: Rules | None = None, solver: str = "cbc", gap_rel: float = DEFAULT_GAP_REL,
                      evaluate_test: Callable[[BitPlan], float] | None = None,
                      float_test_metric: float | None = None) -> TargetResult:
    """The plan with the smallest total ``minimize`` whose validation metric is within ``max_drop`` of float.

    Args:
        table: the cost table.
        max_drop: allowed drop from ``float_metric``, in metric units (``0.005``) or as a
            percentage of the float metric (``"0.5%"``).
        evaluate: ``plan -> validation metric`` (quantizes and measures the model).
        float_metric: the float model's validation metric.
        minimize: the resource to minimize (``size_bytes``, ``latency_ms``, ``bops``...).
        higher_is_better: True for accuracy, False for a loss or perplexity.
        n_points: budgets swept to build the frontier (see :func:`pareto`).
        other_budgets, pins, rules, solver, gap_rel: as in :func:`pareto`.
        evaluate_test, float_test_metric: when given, the chosen plan's test metric and drop
            are reported beside the validation ones (never used to choose).

    Raises:
        InfeasibleBudgetError: no frontier point meets the drop; the message names the best drop
            reached (also in ``error.smallest["max_drop"]``).
    """
    check_bool(higher_is_better, "allocate_for_drop", "higher_is_better")
    check_int(n_points, "allocate_for_drop", "n_points", min=2)
    float_metric = float(check_number(float_metric, "allocate_for_drop", "float_metric"))
    allowed = resolve_drop(max_drop, float_metric)
    front = pareto(table, minimize, n_points, other_budgets, pins=pins, rules=rules, solver=solver,
                   gap_rel=gap_rel)
    points = front.points  # ascending in ``minimize``
    cache: dict[int, float] = {}
    order: list[int] = []

    def drop(i: int) -> float:
        if i not in cache:
            cache[i] = float(evaluate(points[i]))
            order.append(i)
        return _drop(cache[i], float_metric, higher_is_better)

    last = len(points) - 1
    if drop(last) > allowed:  # the largest plan misses: nothing smaller is tried on faith
        best = min(drop(i) for i in cache)
        raise InfeasibleBudgetError(
            f"allocate_for_drop: max_drop must be reachable, but the best drop on the {minimize} frontier is "
            f"{best:.6g} (float {float_metric:.6g}, allowed {allowed:.6g}); allow a drop of at least {best:.6g}, or "
            f"add candidates with more bits", smallest={"max_drop": best})
    lo, hi = 0, last  # invariant: points[hi] meets the drop
    while lo < hi:
        mid = (lo + hi) // 2
        if drop(mid) <= allowed:
            hi = mid
        else:
            lo = mid + 1
    plan = points[hi]
    metric = cache[hi]
    test_metric = test_drop = None
    if evaluate_test is not None:
        test_metric = float(evaluate_test(plan))
        if float_test_metric is not None:
            test_drop = _drop(test_metric, float(float_test_metric), higher_is_better)
    plan.meta.update(max_drop=allowed, val_metric=metric, val_drop=_drop(metric, float_metric, higher_is_better),
                     test_metric=test_metric, test_drop=test_drop)
    return TargetResult(plan, metric, _drop(metric, float_metric, higher_is_better), allowed, float_metric, minimize,
                        tuple((float(points[i].totals[minimize]), cache[i]) for i in order), len(points),
                        test_metric, test_drop)


def _drop(metric: float, float_metric: float, higher_is_better: bool) -> float:
    return float_metric - metric if higher_is_better else metric - float_metric
