"""Accuracy-target mode: smallest frontier plan within a drop, by binary search with real evaluations (#15 item 4)."""

from __future__ import annotations

import math

import pytest

from alloc_helpers import random_table
from mpsearch.allocation import pareto
from mpsearch.allocation.target import allocate_for_drop, resolve_drop
from mpsearch.errors import ConfigError, InfeasibleBudgetError

FLOAT = 0.9


def _metric(plan):  # a validation "accuracy" that falls with total omega
    return FLOAT - 0.05 * plan.objective


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("frac", [0.1, 0.4, 0.9])
def test_returns_the_smallest_frontier_point_meeting_the_drop(seed, frac):
    table = random_table(seed, 6, integer=True)
    front = pareto(table, "size_bytes", 12).points
    drops = [FLOAT - _metric(p) for p in front]
    allowed = min(drops) + frac * (max(drops) - min(drops))
    want = next(p for p, d in zip(front, drops) if d <= allowed)  # linear scan over every point
    calls = []
    res = allocate_for_drop(table, allowed, lambda p: calls.append(p) or _metric(p), FLOAT, n_points=12,
                            evaluate_test=lambda p: _metric(p) - 0.01, float_test_metric=FLOAT)
    assert res.plan.layers == want.layers
    assert res.drop <= allowed and res.plan.totals["size_bytes"] == want.totals["size_bytes"]
    assert len(calls) <= math.ceil(math.log2(len(front))) + 1  # binary search, not a scan
    assert res.test_drop == pytest.approx(res.drop + 0.01)
    assert res.plan.meta["val_drop"] == res.drop and "test drop" in res.summary()


def test_loss_metric_lower_is_better():
    table = random_table(1, 6, integer=True)
    front = pareto(table, "latency_ms", 10).points
    losses = [1.0 + p.objective for p in front]
    allowed = (max(losses) - min(losses)) / 2
    res = allocate_for_drop(table, allowed, lambda p: 1.0 + p.objective, min(losses), minimize="latency_ms",
                            higher_is_better=False, n_points=10)
    want = next(p for p, l in zip(front, losses) if l - min(losses) <= allowed)
    assert res.plan.layers == want.layers


def test_unreachable_drop_names_the_best_reachable_drop():
    table = random_table(2, 5, integer=True)
    best_drop = 0.05 * min(p.objective for p in pareto(table, "size_bytes", 8).points)
    with pytest.raises(InfeasibleBudgetError, match="best drop") as err:
        allocate_for_drop(table, best_drop / 2, _metric, FLOAT, n_points=8)
    assert err.value.smallest["max_drop"] == pytest.approx(best_drop)


def test_percent_drop_and_bad_values():
    assert resolve_drop("0.5%", 0.8) == pytest.approx(0.004)
    assert resolve_drop(0.01, 0.8) == 0.01
    with pytest.raises(ConfigError, match="max_drop"):
        resolve_drop("abc", 0.8)
    with pytest.raises(ConfigError, match="max_drop"):
        resolve_drop(-1, 0.8)
