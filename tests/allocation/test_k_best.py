"""k best plans by no-good cuts against brute force; picking among them by a real metric (#15 item 3)."""

from __future__ import annotations

import numpy as np
import pytest

from alloc_helpers import SOLVERS, enumerate_all, random_table
from mpsearch.allocation.kbest import allocate_k_best, pick_by_evaluation
from mpsearch.core.cost_table import CostTable
from mpsearch.errors import InfeasibleBudgetError


def _limits(table, frac):
    lo = {r: table.extremes(r)[0] for r in ("size_bytes", "latency_ms")}
    hi = {r: table.extremes(r)[1] for r in ("size_bytes", "latency_ms")}
    return {r: lo[r] + frac * (hi[r] - lo[r]) for r in lo}


def _feasible_sorted(table, limits):
    totals, rows_of = enumerate_all(table)
    ok = np.ones(len(totals["omega"]), dtype=bool)
    for name, limit in limits.items():
        ok &= totals[name] <= limit
    idx = np.nonzero(ok)[0]
    order = idx[np.argsort(totals["omega"][idx], kind="stable")]
    return totals["omega"][order], [rows_of(int(i)) for i in order]


def _key(plan):
    return tuple((n, b.w_bits, b.a_bits) for n, b in plan.layers.items())


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("seed", range(6))
def test_k_best_are_the_brute_force_k_best(seed, solver):
    table = random_table(seed, 6, integer=True, n_ties=seed % 2)
    limits = _limits(table, 0.4)
    want, _ = _feasible_sorted(table, limits)
    k = 8
    plans = allocate_k_best(table, limits, k, solver=solver)
    assert len(plans) == min(k, len(want))
    got = np.array([p.objective for p in plans])
    np.testing.assert_allclose(got, want[:len(plans)], rtol=1e-9, atol=1e-12)  # same objectives, in order
    assert len({_key(p) for p in plans}) == len(plans)  # distinct
    for p in plans:
        assert all(p.totals[r] <= limits[r] for r in limits)
    assert [p.meta["rank"] for p in plans] == list(range(1, len(plans) + 1))
    assert plans[0].optimal and not any(p.optimal for p in plans[1:])


@pytest.mark.parametrize("solver", SOLVERS)
def test_ties_and_exhaustion_list_every_feasible_plan_once(solver):
    # two identical layers: swapping their candidates gives plans of equal omega
    recs = []
    for name in ("a", "b"):
        for w, om in ((2, 0.5), (4, 0.2), (8, 0.1)):
            recs.append({"layer": name, "w_bits": w, "a_bits": 8, "omega": om, "size_bytes": 10 * w})
    table = CostTable.from_records(recs)
    limits = {"size_bytes": 120}  # (8,8) = 160 is out; 8 feasible plans
    want, want_rows = _feasible_sorted(table, limits)
    assert len(want) == 8
    plans = allocate_k_best(table, limits, 20, solver=solver)
    assert len(plans) == 8  # fewer than k exist: all of them
    np.testing.assert_allclose([p.objective for p in plans], want)
    assert {_key(p) for p in plans} == {tuple((n, *wa) for n, wa in sorted(r.items())) for r in want_rows}


def test_infeasible_budget_names_the_smallest():
    table = random_table(0, 5, integer=True)
    with pytest.raises(InfeasibleBudgetError):
        allocate_k_best(table, {"size_bytes": 1}, 3)


@pytest.mark.parametrize("seed", range(3))
def test_k_best_agree_between_highs_and_cbc(seed):
    pytest.importorskip("highspy")
    table = random_table(100 + seed, 7, integer=True)
    limits = _limits(table, 0.5)
    a = allocate_k_best(table, limits, 5, solver="highs")
    b = allocate_k_best(table, limits, 5, solver="cbc")
    np.testing.assert_allclose([p.objective for p in a], [p.objective for p in b], rtol=1e-9)


def test_pick_by_evaluation_takes_the_best_metric_within_the_budget():
    table = random_table(3, 6, integer=True)
    plans = allocate_k_best(table, _limits(table, 0.5), 5)
    scores = {_key(p): s for p, s in zip(plans, [0.5, 0.7, 0.9, 0.7, 0.95])}
    best, metrics = pick_by_evaluation(plans, lambda p: scores[_key(p)], max_evals=4)
    assert metrics == [0.5, 0.7, 0.9, 0.7]  # the 5th plan (0.95) is beyond the budget
    assert best is plans[2] and best.meta["metric"] == 0.9
    best, _ = pick_by_evaluation(plans, lambda p: scores[_key(p)], higher_is_better=False)
    assert best is plans[0]
    best, _ = pick_by_evaluation(plans, lambda p: 1.0)  # ties keep the lowest omega
    assert best is plans[0]
