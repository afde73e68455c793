"""Group branching (mpsearch.allocation.branching) against brute force, and inside allocate."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mpsearch.allocation import allocate
from mpsearch.allocation.problem import Core

from alloc_helpers import HAVE_HIGHS, fraction_instance

pytestmark = pytest.mark.skipif(not HAVE_HIGHS, reason="group branching re-solves LPs in highspy")
NAMES = ["size_bytes", "bops", "latency_ms"]


def _instance(seed: int, n_layers: int, frac: float):
    """(core, scaled limits, brute-force optimum in solver units or None) at ``frac`` of each range."""
    p, scaled, feasible = fraction_instance(seed, n_layers, frac, NAMES)
    return Core(p.cost, p.coef, p.var_group, p.group_ptr), scaled, (feasible[0] if len(feasible) else None)


def _search(core, scaled, gap_abs, max_nodes=10_000):
    from mpsearch.allocation.branching import branch_and_bound
    from mpsearch.allocation.solvers.highs import HighsLp

    lp = HighsLp(core)
    lp.solve(scaled)
    return branch_and_bound(core, scaled, lp, None, gap_abs, max_nodes=max_nodes)


def test_proves_the_brute_force_optimum():
    """gap 0, no node limit: the plan is the brute-force optimum, feasible, and proven (bound = value)."""
    n_branched = 0
    for seed in range(40):
        core, scaled, best = _instance(seed, 9, frac=0.4 + 0.01 * seed)
        res = _search(core, scaled, 0.0)
        if best is None:
            assert res.chosen is None and res.closed and res.bound == np.inf
            continue
        assert res.closed and res.optimal
        assert np.all(core.coef[:, res.chosen].sum(axis=1) <= scaled)
        assert core.cost[res.chosen].sum() == pytest.approx(best, rel=1e-9, abs=1e-12)
        assert res.bound <= best + 1e-9 * (1 + abs(best))
        n_branched += res.n_nodes > 0
    assert n_branched >= 10  # most instances needed branching, not only the root LP


def test_gap_abs_is_the_distance_allowed_from_the_optimum():
    for seed in range(20):
        core, scaled, best = _instance(100 + seed, 9, frac=0.5)
        if best is None:
            continue
        for gap in (0.01, 0.1):
            res = _search(core, scaled, gap)
            value = core.cost[res.chosen].sum()
            assert res.closed and best - 1e-12 <= value <= best + gap + 1e-12
            assert res.bound <= best + 1e-12 and value - res.bound <= gap + 1e-12


def test_node_limit_leaves_the_search_open_with_a_valid_bound():
    """One node on a table where branching is needed: not closed, and bound <= optimum <= plan."""
    seen = 0
    for seed in range(40):
        core, scaled, best = _instance(200 + seed, 10, frac=0.5)
        if best is None:
            continue
        res = _search(core, scaled, 0.0, max_nodes=1)
        if res.closed:
            continue
        seen += 1
        assert res.bound <= best + 1e-12
        if res.chosen is not None:
            assert core.cost[res.chosen].sum() >= best - 1e-12
    assert seen >= 3


def test_node_bound_by_hand():
    """Two groups {a0, a1}, {b0, b1}, one budget row: costs 1, 0 | 2, 0; usage 0, 3 | 0, 2; limit 3.
    With lam = 0.5: priced costs 1, 1.5 | 2, 1 -> minima 1 and 1, bound 2 - 1.5 = 0.5; with a1
    forbidden the same; with a0 forbidden: 1.5 + 1 - 1.5 = 1.0."""
    from mpsearch.allocation.branching import node_bound

    core = Core(np.array([1.0, 0.0, 2.0, 0.0]), np.array([[0.0, 3.0, 0.0, 2.0]]), np.array([0, 0, 1, 1]),
                np.array([0, 2, 4]))
    lam, limits = np.array([0.5]), np.array([3.0])
    assert node_bound(core, lam, limits, np.ones(4, dtype=bool)) == pytest.approx(0.5)
    assert node_bound(core, lam, limits, np.array([True, False, True, True])) == pytest.approx(0.5)
    assert node_bound(core, lam, limits, np.array([False, True, True, True])) == pytest.approx(1.0)
    assert node_bound(core, lam, limits, np.array([False, False, True, True])) == np.inf


@pytest.mark.parametrize("solver", ["cbc", "highs"])
def test_allocate_closes_by_branching_and_proves_the_optimum(solver):
    """A 300-layer benchmark table (3 budgets at 50 %) whose LP bound is 1.2e-3 below its
    plans: group branching closes it with no MIP, both within the default gap and with
    gap_rel=0, where it proves the optimum that the full MIP (no fixing, no branching) finds."""
    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from bench_allocation import BUDGETS, make_table

    table = make_table(300, seed=4)
    plan = allocate(table, budgets=BUDGETS, solver=solver)
    assert plan.meta["closed_by"] == "branching" and plan.meta["mip_time_s"] == 0.0
    assert plan.meta["lp_gap_rel"] > 1e-3  # the LP bound alone could not have closed it
    exact = allocate(table, budgets=BUDGETS, solver=solver, gap_rel=0)
    assert exact.meta["closed_by"] == "branching" and exact.status == "optimal" and exact.gap == 0.0
    full = allocate(table, budgets=BUDGETS, solver=solver, gap_rel=0, reduce=False)
    assert full.status == "optimal"
    assert exact.objective == pytest.approx(full.objective, rel=1e-9)
    assert plan.gap <= 1e-4 and full.objective <= plan.objective <= full.objective * (1 + 1e-4)
    for p in (plan, exact):
        for name, limit in p.meta["budgets"].items():
            assert p.totals[name] <= limit * (1 + 1e-12)
