"""The engines' absolute gap: a solve may stop at most ``gap_abs`` above the optimum, and 0 proves it.

The exact solver hands the core MIP an absolute gap (the same rule in CBC and HiGHS, unlike
their relative gaps); these tests hold each engine to it against the brute-force optimum.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpsearch.allocation.exact import CORE_GAP_SHARE, _allowed, _core_gap_abs
from mpsearch.allocation.solvers import get_backend

from alloc_helpers import SOLVERS, fraction_instance, random_table

NAMES = ["size_bytes", "bops", "latency_ms"]


def _instance(seed: int):
    """A 9-layer table's Problem, scaled limits at 50 % of each resource's range, and the
    brute-force optimum and worst feasible objective in solver units."""
    problem, scaled, feasible = fraction_instance(seed, 9, 0.5, NAMES)
    return problem, scaled, feasible[0], feasible[-1]


@pytest.mark.parametrize("solver", SOLVERS)
def test_gap_abs_bounds_the_distance_to_the_optimum(solver):
    for seed in range(6):
        problem, scaled, best, worst = _instance(seed)
        for frac in (0.0, 0.3, 1.0):
            gap = frac * (worst - best)
            backend = get_backend(solver)(problem)
            backend.set_limits(scaled)
            out = backend.solve(None, 0.0, None, gap_abs=gap)
            value = float(problem.cost[out.chosen].sum())
            assert best - 1e-12 <= value <= best + gap + 1e-9 * (1 + abs(best)), (seed, frac)
            assert np.all(problem.coef[:, out.chosen].sum(axis=1) <= scaled + 1e-12)
            if gap == 0:
                assert out.status == "optimal" and value == pytest.approx(best, rel=1e-9, abs=1e-12)
            else:
                assert out.status == "within_gap"  # not proven optimal, only within the gap


def test_core_gap_is_the_share_of_the_allowed_gap_in_core_units():
    """By hand: table objective = cost_const + cost_scale x solver objective; gap_rel of the
    table-unit bound, in solver units, divided by the core's normalisation scale."""
    problem, _, _, _ = _instance(0)
    bound = 0.25  # solver units
    table_bound = problem.cost_const + problem.cost_scale * bound
    allowed = 1e-3 * table_bound / problem.cost_scale
    assert _allowed(problem, bound, 1e-3) == pytest.approx(allowed, rel=1e-12)
    assert _core_gap_abs(problem, 1e-3, bound, scale=0.5) == pytest.approx(CORE_GAP_SHARE * allowed / 0.5, rel=1e-12)
    assert _core_gap_abs(problem, 0.0, bound, scale=0.5) == 0.0


def test_with_cbc_lps_branching_is_capped_and_exact(monkeypatch):
    """Without highspy the LP comes from CBC, one process per LP: branching may spend at most
    SLOW_LP_MAX_NODES nodes, the MIP engine closes the rest, and the plan is still the
    brute-force optimum."""
    from mpsearch.allocation import allocate, exact
    from mpsearch.allocation.solvers.cbc import CbcLp

    monkeypatch.setattr(exact, "get_lp_engine", lambda solver: CbcLp)
    closed = set()
    for seed in range(8):
        table = random_table(300 + seed, 9)
        problem, _, best, _ = _instance(300 + seed)
        limits = {n: float(lo + 0.5 * (hi - lo)) for n, lo, hi in zip(NAMES, problem.lo, problem.hi)}
        plan = allocate(table, budgets=limits, solver="cbc", gap_rel=0)
        assert plan.meta["lp"] == "cbc"
        assert plan.meta["branch_nodes"] is None or plan.meta["branch_nodes"] <= exact.SLOW_LP_MAX_NODES
        optimum = problem.cost_const + problem.cost_scale * best
        assert plan.objective == pytest.approx(optimum, rel=1e-9)
        closed.add(plan.meta["closed_by"])
    assert "mip" in closed  # some cores outlast the node cap


@pytest.mark.parametrize("solver", SOLVERS)
def test_core_mip_without_branching_finds_the_brute_force_optimum(solver):
    """With no branching nodes allowed the MIP engine closes every core (the path taken when
    branching runs out of nodes); exact mode returns the brute-force optimum."""
    from mpsearch.allocation.exact import ExactSolver

    n_mip = 0
    for seed in range(12):
        problem, scaled, best, _ = _instance(400 + seed)
        exact = ExactSolver(problem, solver, max_nodes=0)
        out = exact.solve(scaled, None, 0.0)
        assert out.status == "optimal" and exact.stats["closed_by"] in ("fixing", "mip")
        assert float(problem.cost[out.chosen].sum()) == pytest.approx(best, rel=1e-9, abs=1e-12)
        n_mip += exact.stats["closed_by"] == "mip"
    assert n_mip >= 4


def test_branch_nodes_by_hand():
    """30 nodes on a 1500-candidate core; 300 000 / 50 000 = 6 on a 50 000-candidate one; never
    fewer than 2; 2 at most when every LP is a CBC run."""
    from mpsearch.allocation.exact import branch_nodes

    assert branch_nodes(30, 1_500, True) == 30
    assert branch_nodes(30, 50_000, True) == 6
    assert branch_nodes(30, 10_000_000, True) == 2
    assert branch_nodes(30, 1_500, False) == 2
    assert branch_nodes(0, 1_500, True) == 0
