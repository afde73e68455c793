"""The incumbent's local search and the gap_rel contract, checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from mpsearch.allocation import allocate
from mpsearch.allocation.local_search import local_search
from mpsearch.allocation.problem import Problem
from mpsearch.allocation.reduce import incumbent, lagrangian

from alloc_helpers import SOLVERS, brute_force, enumerate_all, lp_relaxed, random_table

RESOURCES = ("size_bytes", "bops", "latency_ms")


def _instance(rng, seed):
    """A random table (ties, pins, integer or float data) with 1-3 budgets that some assignment meets."""
    table = random_table(900 + seed, int(rng.integers(3, 10)), n_ties=int(rng.integers(0, 3)), integer=seed % 2 == 0)
    names = list(rng.choice(RESOURCES, size=int(rng.integers(1, 4)), replace=False))
    totals, _ = enumerate_all(table)
    limits = {n: float(np.quantile(totals[n], rng.uniform(0.1, 0.6))) for n in names}
    pins = {}
    if seed % 3 == 0:
        c = table.candidates[0][-1]
        pins = {table.layers[0]: (c.w_bits, c.a_bits)}
    return table, names, limits, pins


def test_search_is_feasible_and_never_worse_than_rounding():
    """80 instances: with and without LP reduced costs, the searched incumbent meets every budget
    exactly, costs no more than the plain rounding, and no less than the brute-force optimum."""
    rng = np.random.default_rng(11)
    n_checked = n_better = 0
    for seed in range(80):
        table, names, limits, pins = _instance(rng, seed)
        best, _ = brute_force(table, limits, pins)
        if best is None:
            continue
        problem, scaled, lp = lp_relaxed(table, names, limits, pins)
        plain = incumbent(problem, scaled, lp.x, search=False)
        if plain is None:
            continue
        bound, rc, tol = lagrangian(problem, lp.lam, scaled)
        for kwargs in ({}, {"rc": rc, "bound": bound - tol}):
            searched = incumbent(problem, scaled, lp.x, **kwargs)
            assert np.all(problem.coef[:, searched].sum(axis=1) <= scaled)  # solver units, exact compare
            rows = problem.table_rows(searched)
            for n in names:  # and in table units, as the plan reports them
                assert table.resources[n][rows].sum() <= limits[n] * (1 + 1e-12) + 1e-12
            assert problem.cost[searched].sum() <= problem.cost[plain].sum()
            omega = float(table.omega[rows].sum())
            assert omega >= best * (1 - 1e-9)
        n_checked += 1
        n_better += problem.cost[searched].sum() < problem.cost[plain].sum()
    assert n_checked >= 40 and n_better >= 1, (n_checked, n_better)


def test_search_finds_the_swap_rounding_misses():
    """Two layers, one budget: the only feasible improvement is one layer up and the other down
    at once (a pair swap), which single moves cannot reach."""
    problem, scaled = _swap_problem()
    start = np.array([problem.group_ptr[0], problem.group_ptr[1] + 1])  # a high, b low: omega 3
    start_cost = problem.cost[start].sum()
    # the other way round (a low 5, b high 0) costs 5: worse. Feasible states: (hi,lo)=3, (lo,hi)=5, (lo,lo)=8
    out = local_search(problem, scaled, start)
    assert problem.cost[out].sum() == start_cost  # already optimal: nothing to gain, stays put
    worse = np.array([problem.group_ptr[0] + 1, problem.group_ptr[1]])  # omega 5
    out = local_search(problem, scaled, worse)
    assert np.array_equal(out, start)  # a pair swap (a up, b down) reaches the optimum 3


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("gap_rel", [1e-4, 0.02, 0.2])
def test_gap_rel_contract(solver, gap_rel):
    """objective <= optimum x (1 + gap_rel); the reported gap and bound hold; "within_gap" unless
    proven optimal (then gap 0 and the brute-force optimum)."""
    rng = np.random.default_rng(int(gap_rel * 1e4) + 5)
    n_checked = 0
    for seed in range(20):
        table, names, limits, pins = _instance(rng, seed)
        best, _ = brute_force(table, limits, pins)
        if best is None:
            continue
        plan = allocate(table, budgets=limits, pins=pins, solver=solver, gap_rel=gap_rel)
        assert plan.status in ("within_gap", "optimal")
        assert plan.optimal == (plan.status == "optimal")
        assert best * (1 - 1e-9) - 1e-12 <= plan.objective <= best * (1 + gap_rel) + 1e-12
        if plan.optimal:
            assert plan.gap == 0.0 and plan.objective == pytest.approx(best, rel=1e-9, abs=1e-12)
        else:
            assert plan.gap is not None and plan.gap <= gap_rel + 1e-9
            lower = plan.objective * (1 - plan.gap)  # the proven lower bound
            assert lower <= best * (1 + 1e-9) + 1e-12
        for n in names:
            assert plan.totals[n] <= limits[n] * (1 + 1e-12) + 1e-12
        n_checked += 1
    assert n_checked >= 10


def test_search_stops_at_its_target():
    """A caller that only needs a plan within some gap passes ``target``: a state already at or
    below it is returned unchanged, one above it is improved (here to the optimum 3)."""
    problem, scaled = _swap_problem()
    best = np.array([problem.group_ptr[0], problem.group_ptr[1] + 1])  # omega 3
    worse = np.array([problem.group_ptr[0] + 1, problem.group_ptr[1]])  # omega 5
    worse_cost = problem.cost[worse].sum()
    assert np.array_equal(local_search(problem, scaled, worse, target=worse_cost), worse)
    assert np.array_equal(local_search(problem, scaled, worse, target=worse_cost * 0.99), best)


def _swap_problem():
    """Layer a: candidates (omega, size) = (0, 10) / (5, 0); layer b: (0, 10) / (3, 1); size <= 11."""
    from mpsearch.core.cost_table import CostTable

    recs = [{"layer": "a", "w_bits": 8, "a_bits": 8, "omega": 0.0, "size_bytes": 10.0},
            {"layer": "a", "w_bits": 4, "a_bits": 8, "omega": 5.0, "size_bytes": 0.0},
            {"layer": "b", "w_bits": 8, "a_bits": 8, "omega": 0.0, "size_bytes": 10.0},
            {"layer": "b", "w_bits": 4, "a_bits": 8, "omega": 3.0, "size_bytes": 1.0}]
    problem = Problem(CostTable.from_records(recs), "omega", ["size_bytes"])
    return problem, problem.scale_limits([11.0])
