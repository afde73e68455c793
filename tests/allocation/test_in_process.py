"""In-process HiGHS and the CBC fallback (highspy missing) give the brute-force optimum and the same plan (#17)."""

from __future__ import annotations

import importlib.util

import pytest

from alloc_helpers import HAVE_HIGHS, brute_force, random_table
from mpsearch.allocation import allocate, allocate_k_best
import mpsearch.allocation.kbest as kbest
import mpsearch.allocation.solvers as solvers

pytestmark = pytest.mark.skipif(not HAVE_HIGHS, reason="compares in-process HiGHS with CBC")


def _without_highspy(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *a, **k):
        return None if name == "highspy" else real(name, *a, **k)

    monkeypatch.setattr(solvers.importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(kbest.importlib.util, "find_spec", find_spec)


def _limits(table, frac):
    out = {}
    for r in ("size_bytes", "bops", "latency_ms"):
        lo, hi = table.extremes(r)
        out[r] = lo + frac * (hi - lo)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_in_process_and_cbc_fallback_agree_with_brute_force(seed, monkeypatch):
    table = random_table(200 + seed, 8, integer=True, n_ties=seed % 3)
    limits = _limits(table, 0.3 + 0.05 * seed)
    best, rows = brute_force(table, limits)
    if best is None:
        pytest.skip("no feasible plan at this limit")
    highs = allocate(table, limits, solver="highs", gap_rel=0)
    assert highs.meta["lp"] == "highs" and highs.optimal
    _without_highspy(monkeypatch)
    cbc = allocate(table, limits, solver="cbc", gap_rel=0)
    assert cbc.meta["lp"] == "cbc" and cbc.optimal  # the LP came from CBC: highspy looked missing
    k1 = allocate_k_best(table, limits, 1)[0]  # "auto" without highspy: CBC
    assert k1.solver == "cbc"
    for plan in (highs, cbc, k1):
        assert plan.objective == pytest.approx(best, rel=1e-12, abs=1e-15)
        assert {n: (b.w_bits, b.a_bits) for n, b in plan.layers.items()} == rows
