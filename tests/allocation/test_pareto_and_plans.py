"""Pareto fronts (sorted, distinct, non-dominated, each point optimal) and plan round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from mpsearch.allocation import ParetoFront, allocate, pareto
from mpsearch.allocation.status import TIME_LIMIT, SolverOutcome
from mpsearch.core.plan import BitPlan
from mpsearch.errors import ConfigError

from alloc_helpers import SOLVERS, brute_force, enumerate_all, random_table


@pytest.mark.parametrize("solver", SOLVERS)
def test_pareto_front_is_the_brute_force_front(solver):
    table = random_table(11, 8, n_ties=1, integer=True)
    totals, _ = enumerate_all(table)
    lat = float(totals["latency_ms"].min() + 0.6 * (totals["latency_ms"].max() - totals["latency_ms"].min()))
    front = pareto(table, "size_bytes", 25, other_budgets={"latency_ms": lat}, solver=solver)
    sizes = [p.totals["size_bytes"] for p in front.points]
    omegas = [p.objective for p in front.points]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert all(a > b for a, b in zip(omegas, omegas[1:]))  # strictly better omega as size grows
    assert len({tuple(b.key for b in p.layers.values()) for p in front.points}) == len(front)
    for p in front.points:  # each point is the optimum for the budget it was solved at
        budget = p.meta["budgets"]["size_bytes"]
        best, _ = brute_force(table, {"size_bytes": budget, "latency_ms": lat})
        assert p.objective == pytest.approx(best, rel=1e-9) and p.totals["latency_ms"] <= lat
    # ends: smallest size reachable under the latency budget; omega optimum with size free
    ok = totals["latency_ms"] <= lat
    assert sizes[0] == totals["size_bytes"][ok].min()
    assert omegas[-1] == pytest.approx(brute_force(table, {"latency_ms": lat})[0], rel=1e-9)
    # every brute-force non-dominated point whose size lies on the grid's steps is present:
    # no brute-force assignment beats the front (lower omega at no larger size)
    for s, o in zip(sizes, omegas):
        better = ok & (totals["size_bytes"] <= s) & (totals["omega"] < o * (1 - 1e-9))
        assert not better.any()


def test_pareto_front_round_trips_and_records(tmp_path):
    table = random_table(3, 6, integer=True)
    front = pareto(table, "bops", 10)
    again = ParetoFront.from_dict(front.to_dict())
    assert again == front
    recs = front.to_records()
    assert [r["bops"] for r in recs] == [p.totals["bops"] for p in front.points]
    assert set(recs[0]) >= {"budget_bops", "omega", "size_bytes", "bops", "latency_ms", "status", "bits"}
    with pytest.raises(ConfigError, match="must not budget the swept resource"):
        pareto(table, "bops", 5, other_budgets={"bops": 3})
    with pytest.raises(ConfigError, match="n_points must be an integer >= 2"):
        pareto(table, "bops", 1)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_plan_round_trips_exactly(tmp_path, suffix):
    table = random_table(5, 9, n_ties=2)  # float resources: exact float round-trip matters
    plan = allocate(table, budgets={"size_bytes": "45%", "latency_ms": "60%"}, pins={table.layers[2]: table.candidates[2][0].key})
    path = tmp_path / f"plan{suffix}"
    plan.save(path)
    loaded = BitPlan.load(path)
    assert loaded == plan
    assert loaded.meta["budgets"] == plan.meta["budgets"] and loaded.totals == plan.totals


def test_time_limit_on_a_hard_instance_returns_an_unproven_plan():
    pytest.importorskip("highspy")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from bench_allocation import BUDGETS, make_table

    table = make_table(1000)  # proving its optimum takes seconds (see docs/BENCHMARKS.md)
    plan = allocate(table, budgets=BUDGETS, solver="highs", time_limit_s=0.5, gap_rel=0)
    assert plan.status == "time_limit" and plan.optimal is False
    assert plan.gap is not None and plan.gap > 0
    for name, limit in plan.meta["budgets"].items():
        assert plan.totals[name] <= limit * (1 + 1e-9)


def test_time_limit_status_and_gap_from_bound(monkeypatch):
    """A stopped solve keeps its plan; the gap is computed from the solver's bound in table units."""
    table = random_table(2, 5, n_cands=2, integer=True)
    totals, rows_of = enumerate_all(table)
    limit = float(np.median(totals["size_bytes"]))
    best, assign = brute_force(table, {"size_bytes": limit})
    from mpsearch.allocation.solvers.cbc import CbcBackend

    def fake_solve(self, time_limit_s, gap_rel, start=None):
        # report the optimum (never a pruned candidate) and a bound at half of it
        p = self.problem
        worst = assign
        chosen = []
        for g in range(p.n_groups):
            layer = table.layers[int(np.nonzero(p.layer_group == g)[0][0])]
            pos = [(c.w_bits, c.a_bits) for c in p.group_cands[g]].index(worst[layer])
            chosen.append(p.group_ptr[g] + int(np.nonzero(p.var_pos[p.group_ptr[g]:p.group_ptr[g + 1]] == pos)[0][0]))
        bound_true = best / 2
        return SolverOutcome(TIME_LIMIT, np.array(chosen), (bound_true - p.cost_const) / p.cost_scale, 0.01, "Stopped on time")

    monkeypatch.setattr(CbcBackend, "solve", fake_solve)
    # reduce=False: the fake stands in for the MIP on the whole problem (no LP, no fixing)
    plan = allocate(table, budgets={"size_bytes": limit}, time_limit_s=1.0, reduce=False)
    assert plan.status == "time_limit" and not plan.optimal
    assert plan.objective == pytest.approx(best, rel=1e-12)
    assert plan.gap == pytest.approx(0.5, rel=1e-9)  # (best - best / 2) / best
