"""Reduced-cost fixing is exact: it never removes a candidate of an optimal assignment."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mpsearch.allocation import allocate
from mpsearch.allocation.reduce import incumbent, lagrangian, restrict

from alloc_helpers import SOLVERS, enumerate_all, lp_relaxed, random_table

RESOURCES = ("size_bytes", "bops", "latency_ms")


def _optimal_assignments(table, limits, pins):
    """Table rows (n_layers,) of every assignment whose objective equals the brute-force optimum."""
    totals, rows_of = enumerate_all(table, pins)
    ok = np.ones(len(totals["omega"]), dtype=bool)
    for name, limit in limits.items():
        ok &= totals[name] <= limit
    if not ok.any():
        return None, []
    best = totals["omega"][ok].min()
    hits = np.nonzero(ok & (totals["omega"] <= best * (1 + 1e-12)))[0]
    out = []
    for h in hits:
        bits = rows_of(int(h))
        out.append(np.array([table.row_of(l, *bits[l]) for l in table.layers]))
    return float(best), out


@pytest.mark.parametrize("use_lp_duals", [True, False])
def test_fixing_keeps_every_optimum_on_random_instances(use_lp_duals):
    """Brute force over 60 small instances (ties, pins, integer and float data, 1-3 budgets);
    with the LP's duals and with arbitrary multipliers (the bound holds for any lam >= 0)."""
    rng = np.random.default_rng(7)
    n_checked = n_reduced = 0
    for seed in range(60):
        n_layers = int(rng.integers(3, 10))
        table = random_table(500 + seed, n_layers, n_ties=int(rng.integers(0, 3)), integer=seed % 2 == 0)
        names = list(rng.choice(RESOURCES, size=int(rng.integers(1, 4)), replace=False))
        totals, _ = enumerate_all(table)
        limits = {n: float(np.quantile(totals[n], rng.uniform(0.1, 0.6))) for n in names}
        pins = {}
        if seed % 4 == 0:
            layer = table.layers[0]
            pins = {layer: (table.candidates[0][-1].w_bits, table.candidates[0][-1].a_bits)}
        best, optima = _optimal_assignments(table, limits, pins)
        if best is None:
            continue
        problem, scaled, lp = lp_relaxed(table, names, limits, pins)
        lam, x = (lp.lam, lp.x) if use_lp_duals else (rng.uniform(0, 2, len(names)), lp.x)
        bound, rc, tol = lagrangian(problem, lam, scaled)
        assert problem.cost_const + problem.cost_scale * bound <= best * (1 + 1e-9) + 1e-12  # a lower bound
        inc = incumbent(problem, scaled, x)
        if inc is None:  # without an incumbent nothing is removed (ExactSolver hands all to the MIP)
            continue
        upper = float(problem.cost[inc].sum())
        assert problem.cost_const + problem.cost_scale * upper >= best * (1 - 1e-9)  # feasible, so >= optimum
        keep = rc <= upper - bound + tol
        keep[inc] = True
        red = restrict(problem, keep, scaled)
        survivors = 0
        for rows in optima:
            chosen = problem.vars_of_rows(rows)
            if chosen is None:  # uses a dominated candidate that ties with a kept one
                continue
            assert keep[chosen].all(), f"seed {seed}: fixing removed a candidate of an optimum"
            core = red.to_core(chosen)
            assert core is not None and np.array_equal(red.to_problem(core), chosen)
            survivors += 1
        assert survivors >= 1, f"seed {seed}"
        n_checked += 1
        n_reduced += int(keep.sum() < problem.n_vars)
    assert n_checked >= 30 and n_reduced >= (5 if use_lp_duals else 1)  # the test is not vacuous


@pytest.mark.parametrize("solver", SOLVERS)
def test_reduced_solve_matches_full_mip_on_300_layers(solver):
    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from bench_allocation import make_table

    table = make_table(300, seed=3)
    budgets = {"size_bytes": "40%", "latency_ms": "60%"}
    full = allocate(table, budgets=budgets, solver=solver, reduce=False, gap_rel=0)
    reduced = allocate(table, budgets=budgets, solver=solver, gap_rel=0)
    assert full.status == reduced.status == "optimal"
    assert reduced.objective == pytest.approx(full.objective, rel=1e-9)
    assert reduced.meta["n_vars_after_fixing"] < reduced.meta["n_vars"] / 2  # fixing did real work
    for name, limit in reduced.meta["budgets"].items():
        assert reduced.totals[name] <= limit * (1 + 1e-9)
