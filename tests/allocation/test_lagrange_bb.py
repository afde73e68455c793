"""The compiled Lagrangian group branching (mpsearch.allocation.lagrange_bb) against brute force
and against the LP: its root bound is the LP bound, its plans are the brute-force optima, its
bounds never exceed the optimum (gap 0, gap_abs > 0, a node budget that runs out), and a Pareto
sweep with a second budget matches brute force point by point."""

from __future__ import annotations

import numpy as np
import pytest

import mpsearch.allocation.exact as exact_mod
from mpsearch.allocation import pareto
from mpsearch.allocation.exact import ExactSolver, _normalized
from mpsearch.allocation.problem import Core, Problem

from alloc_helpers import HAVE_HIGHS, HAVE_NUMBA, brute_force, fraction_instance, random_table

pytestmark = pytest.mark.skipif(not (HAVE_NUMBA and HAVE_HIGHS), reason="needs numba (and highspy for the LP)")
ROWS = [["size_bytes"], ["size_bytes", "latency_ms"], ["bops", "latency_ms"]]


def _instance(seed: int, n_layers: int = 8):
    """(normalized core, limits, brute-force optimum in core units or None, problem)."""
    rng = np.random.default_rng(seed)
    names = ROWS[seed % len(ROWS)]
    p, scaled, feasible = fraction_instance(seed, n_layers, float(rng.uniform(0.1, 0.8)), names)
    core, shift, scale = _normalized(Core(p.cost, p.coef, p.var_group, p.group_ptr))
    best = (feasible[0] - shift) / scale if len(feasible) else None
    return core, scaled, best, p


def _search(core, limits, gap_abs, max_nodes=100_000):
    from mpsearch.allocation.lagrange_bb import branch_lagrange

    return branch_lagrange(core, limits, None, gap_abs, None, max_nodes)


def test_root_bound_is_the_lp_bound():
    """With every candidate allowed, the multiplier search reaches the LP optimum (HiGHS) from
    multipliers 0, and never passes it (it is a lower bound)."""
    from mpsearch.allocation._lagrange_kernels import kernel
    from mpsearch.allocation.solvers.highs import HighsLp

    n_checked = 0
    for seed in range(60):
        core, limits, best, _ = _instance(seed, n_layers=10)
        lp = HighsLp(core).solve(limits)
        two = len(limits) == 2
        t = core.coef[1] if two else np.zeros(core.n_vars)
        l1, l2, bound = kernel("bound")(0.0, 0.0, two, core.cost, core.coef[0].copy(), t.copy(), core.group_ptr,
                                        np.full(core.n_groups, -1), np.full(core.n_vars, -1), float(limits[0]),
                                        float(limits[1]) if two else 0.0, np.inf)
        if lp.x is None:  # LP infeasible: the bound grows without limit or is inf
            assert bound > 1.0
            continue
        value = float(core.cost @ lp.x)
        assert bound <= value + 1e-7 * (1 + abs(value))
        assert bound >= value - 1e-7 * (1 + abs(value)), (seed, bound, value)
        if best is not None:
            assert bound <= best + 1e-12
        n_checked += 1
    assert n_checked >= 40


def test_proves_the_brute_force_optimum():
    n_branched = 0
    for seed in range(60):
        core, limits, best, _ = _instance(seed)
        res = _search(core, limits, 0.0)
        if best is None:
            assert res.chosen is None and res.closed and res.bound == np.inf
            continue
        assert res.closed and res.optimal, seed
        assert np.all(core.coef[:, res.chosen].sum(axis=1) <= limits * (1 + 1e-12) + 1e-12)
        assert core.cost[res.chosen].sum() == pytest.approx(best, rel=1e-9, abs=1e-12)
        assert res.bound <= best + 1e-9 * (1 + abs(best))
        n_branched += res.n_nodes > 0
    assert n_branched >= 10


@pytest.mark.parametrize("gap_abs", [0.01, 0.1])
def test_gap_abs_is_the_distance_allowed_and_the_bound_stays_below_the_optimum(gap_abs):
    for seed in range(100, 140):
        core, limits, best, _ = _instance(seed)
        if best is None:
            continue
        res = _search(core, limits, gap_abs)
        value = core.cost[res.chosen].sum()
        assert res.closed and best - 1e-12 <= value <= best + gap_abs + 1e-12
        assert res.bound <= best + 1e-12 and value - res.bound <= gap_abs + 1e-9


def test_node_budget_run_out_keeps_a_valid_bound_and_a_feasible_plan():
    n_open = 0
    for seed in range(200, 260):
        core, limits, best, _ = _instance(seed, n_layers=9)
        if best is None:
            continue
        res = _search(core, limits, 0.0, max_nodes=2)
        assert res.bound <= best + 1e-12
        if res.chosen is not None:
            assert np.all(core.coef[:, res.chosen].sum(axis=1) <= limits * (1 + 1e-12) + 1e-12)
            assert core.cost[res.chosen].sum() >= best - 1e-12
        n_open += not res.closed
    assert n_open >= 5


def test_out_of_nodes_hands_over_to_the_mip(monkeypatch):
    """ExactSolver with a two-node compiled search: the MIP finishes and proves the optimum."""
    monkeypatch.setattr(exact_mod, "FAST_NODE_VARS", 1)  # max(2, 1 // n) = 2 nodes
    n_mip = 0
    for seed in range(300, 330):
        table = random_table(seed, 10)
        limits = {"size_bytes": float(np.quantile(table.resources["size_bytes"], 0.4)) * 10,
                  "latency_ms": float(np.quantile(table.resources["latency_ms"], 0.5)) * 10}
        best, _ = brute_force(table, limits)
        if best is None:
            continue
        problem = Problem(table, "omega", list(limits))
        solver = ExactSolver(problem, "highs", fast=True)
        out = solver.solve(problem.scale_limits(list(limits.values())), None, 0.0)
        value = float(table.omega[problem.table_rows(out.chosen)].sum())
        assert value == pytest.approx(best, rel=1e-12) and out.status == "optimal"
        n_mip += solver.stats["closed_by"] == "mip"
    assert n_mip >= 3


@pytest.mark.parametrize("gap_rel", [0.0, 1e-4])
def test_pareto_sweep_with_a_second_budget_matches_brute_force(gap_rel):
    table = random_table(11, 9)
    front = pareto(table, "size_bytes", 12, other_budgets={"latency_ms": "50%"}, gap_rel=gap_rel)
    lat = front.budgets["latency_ms"]
    assert len(front) >= 4
    for p in front.points:
        budget = p.meta["budgets"]["size_bytes"]
        # the lowest point's budget is the smallest total itself: compare with float slack
        best, _ = brute_force(table, {"size_bytes": budget * (1 + 1e-12), "latency_ms": lat})
        assert p.totals["size_bytes"] <= budget * (1 + 1e-12) and p.totals["latency_ms"] <= lat * (1 + 1e-12)
        assert best * (1 - 1e-12) <= p.objective <= best * (1 + gap_rel) + 1e-12 * best
        assert p.objective * (1 - p.gap) <= best * (1 + 1e-12)  # the reported gap is a real bound
        assert p.meta["closed_by"] != "mip"


@pytest.mark.parametrize("row", [0, 1])
def test_whole_problem_with_a_budget_below_every_plan_is_infeasible(row):
    """ExactSolver's compiled path: a budget under the smallest total of its row -> infeasible,
    found by the root bound (no node, no LP engine)."""
    table = random_table(7, 6)
    names = ["size_bytes", "latency_ms"]
    problem = Problem(table, "omega", names)
    limits = [float(problem.hi[0]), float(problem.hi[1])]
    limits[row] = float(problem.lo[row]) * (1 - 1e-6)
    assert brute_force(table, dict(zip(names, limits)))[0] is None
    solver = ExactSolver(problem, "highs", fast=True)
    out = solver.solve(problem.scale_limits(limits), None, 0.0)
    assert out.status == "infeasible" and out.chosen is None
    assert solver.stats["closed_by"] == "infeasible" and solver.stats["lp"] == exact_mod.LAGRANGIAN_LP


def test_whole_problem_under_a_time_limit_meets_the_budgets():
    """A time limit turns into a node budget: the plan still meets both budgets and its bound holds."""
    for seed in range(400, 420):
        table = random_table(seed, 9)
        limits = {"size_bytes": float(np.quantile(table.resources["size_bytes"], 0.4)) * 9,
                  "latency_ms": float(np.quantile(table.resources["latency_ms"], 0.5)) * 9}
        best, _ = brute_force(table, limits)
        if best is None:
            continue
        problem = Problem(table, "omega", list(limits))
        out = ExactSolver(problem, "highs", fast=True).solve(problem.scale_limits(list(limits.values())), 1e-4, 0.0)
        if out.chosen is None:
            continue
        rows = problem.table_rows(out.chosen)
        assert all(table.resources[n][rows].sum() <= v * (1 + 1e-12) for n, v in limits.items())
        assert float(table.omega[rows].sum()) >= best * (1 - 1e-12)
        if out.bound is not None:
            assert problem.cost_const + problem.cost_scale * out.bound <= best * (1 + 1e-12)
