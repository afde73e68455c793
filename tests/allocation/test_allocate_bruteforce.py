"""allocate() returns the brute-force optimum on random tables small enough to enumerate: always
with ``gap_rel=0`` (proven), and on every instance here with the default ``gap_rel=1e-4``."""

from __future__ import annotations

import numpy as np
import pytest

from mpsearch.allocation import allocate
from mpsearch.core.profile import Rules
from mpsearch.errors import InfeasibleBudgetError

from alloc_helpers import SOLVERS, brute_force, enumerate_all, random_table

RESOURCES = ("size_bytes", "bops", "latency_ms")


def _instance(seed: int):
    rng = np.random.default_rng(1000 + seed)
    n_layers = int(rng.integers(3, 13))
    table = random_table(seed, n_layers, n_ties=int(rng.integers(0, min(3, n_layers // 2) + 1)), integer=seed % 2 == 0)
    n_budgets = int(rng.integers(1, 4))
    names = list(rng.choice(RESOURCES, size=n_budgets, replace=False))
    fractions = {n: float(rng.uniform(0.15, 0.85)) for n in names}
    pins = {}
    if seed % 3 == 0:
        layer = table.layers[int(rng.integers(0, n_layers))]
        c = table.candidates[table.index_of(layer)][0]
        pins[layer] = (c.w_bits, c.a_bits)
    return table, fractions, pins


def _limits(table, fractions, pins):
    totals, _ = enumerate_all(table, pins)
    return {n: float(totals[n].min() + f * (totals[n].max() - totals[n].min())) for n, f in fractions.items()}


@pytest.mark.parametrize("solver", SOLVERS)
def test_matches_brute_force_on_random_instances(solver):
    n_checked = n_infeasible = n_default_exact = 0
    for seed in range(40):
        table, fractions, pins = _instance(seed)
        limits = _limits(table, fractions, pins)
        best, _ = brute_force(table, limits, pins)
        if best is None:
            with pytest.raises(InfeasibleBudgetError):
                allocate(table, budgets=limits, pins=pins, solver=solver)
            n_infeasible += 1
            continue
        plan = allocate(table, budgets=limits, pins=pins, solver=solver, gap_rel=0)
        assert plan.objective == pytest.approx(best, rel=1e-9), f"seed {seed}"
        assert plan.status == "optimal" and plan.optimal and plan.gap == 0.0 and plan.solver == solver
        default = allocate(table, budgets=limits, pins=pins, solver=solver)  # gap_rel=1e-4
        assert best * (1 - 1e-9) <= default.objective <= best * (1 + 1e-4), f"seed {seed}"
        n_default_exact += default.objective == pytest.approx(best, rel=1e-9)
        for name, limit in limits.items():
            assert plan.totals[name] <= limit * (1 + 1e-12), f"seed {seed}: {name}"
        for grp in table.ties:
            assert len({plan[n] for n in grp}) == 1
        for layer, (w, a) in pins.items():
            assert (plan[layer].w_bits, plan[layer].a_bits) == (w, a)
        rows = table.rows_for_plan(plan)  # totals and objective agree with the table
        assert plan.totals == {k: v for k, v in table.totals(rows).items() if k != "omega"}
        n_checked += 1
    assert n_checked >= 30  # the generator mostly makes feasible instances
    # on tables this small the default gap never stops short of the optimum
    assert n_default_exact == n_checked


@pytest.mark.parametrize("solver", SOLVERS)
def test_relative_budgets_match_brute_force(solver):
    """Relative budgets given as 'x%' (ties respected in lo/hi) give the same optimum."""
    for seed in range(40, 48):
        table = random_table(seed, 8, n_ties=2, integer=True)
        plan = allocate(table, budgets={"size_bytes": "40%", "bops": "70%"}, solver=solver)
        totals, _ = enumerate_all(table)
        limits = {n: totals[n].min() + f * (totals[n].max() - totals[n].min())
                  for n, f in (("size_bytes", 0.4), ("bops", 0.7))}
        assert plan.meta["budgets"] == pytest.approx(limits, rel=1e-12)
        best, _ = brute_force(table, limits)
        assert plan.objective == pytest.approx(best, rel=1e-9)


@pytest.mark.parametrize("solver", SOLVERS)
def test_rules_pin_first_and_last_layer(solver):
    table = random_table(7, 9, n_cands=4, integer=True)
    first, last = table.layers[0], table.layers[-1]
    keys = lambda n: [(c.w_bits, c.a_bits) for c in table.candidates[table.index_of(n)]]
    rules = Rules(first_layer=keys(first)[-1], last_layer=keys(last)[0])
    totals, _ = enumerate_all(table)
    limits = {"size_bytes": float(np.quantile(totals["size_bytes"], 0.4))}
    plan = allocate(table, budgets=limits, rules=rules, solver=solver)
    best, _ = brute_force(table, limits, pins={first: keys(first)[-1], last: keys(last)[0]})
    assert plan.objective == pytest.approx(best, rel=1e-9)
    assert (plan[first].w_bits, plan[first].a_bits) == keys(first)[-1]
    assert (plan[last].w_bits, plan[last].a_bits) == keys(last)[0]
    # an explicit pin wins over the rule
    plan2 = allocate(table, budgets=limits, rules=rules, pins={first: "w%da%d" % keys(first)[0]}, solver=solver)
    assert (plan2[first].w_bits, plan2[first].a_bits) == keys(first)[0]
