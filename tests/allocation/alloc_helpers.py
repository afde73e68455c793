"""Random small cost tables and a brute-force optimum to check the ILP against."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mpsearch.core.cost_table import CostTable

HAVE_HIGHS = importlib.util.find_spec("highspy") is not None
HAVE_NUMBA = importlib.util.find_spec("numba") is not None
SOLVERS = ["cbc", pytest.param("highs", marks=pytest.mark.skipif(not HAVE_HIGHS, reason="highspy not installed"))]
PAIRS = [(2, 8), (4, 4), (4, 8), (8, 8)]


def random_table(seed: int, n_layers: int, n_cands: int | None = None, n_ties: int = 0,
                 integer: bool = False) -> CostTable:
    """Layers with 2-4 candidates each; resources size_bytes, bops, latency_ms.

    Integer resources make budget comparisons exact; float ones test tolerances.
    """
    rng = np.random.default_rng(seed)
    records = []
    # tied layers must share candidates: draw each tie group's candidate set once
    names = [f"block{i // 3}.conv{i % 3}" for i in range(n_layers)]
    perm = rng.permutation(n_layers)
    ties = [sorted(names[j] for j in perm[2 * t:2 * t + 2]) for t in range(n_ties)]
    cand_of = {}
    for grp in ties:
        k = n_cands or int(rng.integers(2, 5))
        pairs = [PAIRS[j] for j in sorted(rng.choice(len(PAIRS), size=k, replace=False))]
        for name in grp:
            cand_of[name] = pairs
    for name in names:
        k = n_cands or int(rng.integers(2, 5))
        pairs = cand_of.get(name) or [PAIRS[j] for j in sorted(rng.choice(len(PAIRS), size=k, replace=False))]
        n_params = int(rng.integers(10, 200))
        for w, a in pairs:
            rec = {"layer": name, "w_bits": w, "a_bits": a,
                   "omega": float(rng.uniform(0.5, 1.5) * 4.0 ** (-w) + rng.uniform(0, 1) * 4.0 ** (-a))}
            if integer:
                rec.update(size_bytes=n_params * w, bops=int(rng.integers(1, 30)) * w * a,
                           latency_ms=int(rng.integers(1, 20)) * max(w, a))
            else:
                rec.update(size_bytes=n_params * w / 8 * rng.uniform(0.9, 1.1),
                           bops=float(rng.uniform(1, 30) * w * a), latency_ms=float(rng.uniform(0.01, 0.2) * max(w, a)))
            records.append(rec)
    return CostTable.from_records(records, ties=ties)


def enumerate_all(table: CostTable, pins: dict[str, tuple[int, int]] | None = None):
    """Every assignment that respects ties and pins: (totals dict of arrays, group choice arrays).

    Returns a dict name -> 1-D array over assignments (``omega`` and each resource) and
    a function mapping an assignment index to the table rows of every layer.
    """
    pins = pins or {}
    groups, seen = [], set()
    tie_of = {n: g for g in table.ties for n in g}
    for name in table.layers:
        if name in seen:
            continue
        grp = list(tie_of.get(name, (name,)))
        seen.update(grp)
        groups.append(grp)
    options = []  # per group: list of (w, a)
    for grp in groups:
        keys = [(c.w_bits, c.a_bits) for c in table.candidates[table.index_of(grp[0])]]
        pinned = {pins[n] for n in grp if n in pins}
        options.append([k for k in keys if not pinned or k in pinned])
    names = ["omega", *table.resources]
    arrays = {n: (table.omega if n == "omega" else table.resources[n]) for n in names}
    totals = {n: np.zeros(1) for n in names}
    for grp, opts in zip(groups, options):
        vals = {n: np.array([sum(arrays[n][table.row_of(l, w, a)] for l in grp) for w, a in opts]) for n in names}
        totals = {n: (totals[n][:, None] + vals[n][None, :]).ravel() for n in names}
    sizes = [len(o) for o in options]

    def rows_of(index: int) -> dict[str, tuple[int, int]]:
        digits = np.unravel_index(index, sizes)
        return {l: options[g][int(d)] for g, d in enumerate(digits) for l in groups[g]}

    return totals, rows_of


def brute_force(table: CostTable, limits: dict[str, float], pins=None, objective: str = "omega"):
    """(best objective, assignment index) or (None, None) when nothing meets the limits."""
    totals, rows_of = enumerate_all(table, pins)
    ok = np.ones(len(totals["omega"]), dtype=bool)
    for name, limit in limits.items():
        ok &= totals[name] <= limit
    if not ok.any():
        return None, None
    vals = np.where(ok, totals[objective], np.inf)
    best = int(np.argmin(vals))
    return float(vals[best]), rows_of(best)


def lp_relaxed(table: CostTable, names: list[str], limits: dict[str, float], pins=None):
    """``(problem, scaled limits, LP result)`` of ``table`` under ``limits`` (LP solved by CBC)."""
    from mpsearch.allocation.problem import Problem
    from mpsearch.allocation.solvers import get_lp_engine

    problem = Problem(table, "omega", names, {table.index_of(k): v for k, v in (pins or {}).items()})
    scaled = problem.scale_limits([limits[n] for n in names])
    return problem, scaled, get_lp_engine("cbc")(problem).solve(scaled)


def fraction_instance(seed: int, n_layers: int, frac: float, names=("size_bytes", "bops", "latency_ms")):
    """``(problem, scaled limits, feasible objectives)`` of ``random_table(seed, n_layers)`` with
    every resource in ``names`` limited at ``frac`` of the way from its smallest to its largest
    total; the brute-force objectives of every assignment within the limits are in solver units
    (sorted; empty when nothing fits)."""
    from mpsearch.allocation.problem import Problem

    table = random_table(seed, n_layers)
    problem = Problem(table, "omega", list(names), {})
    limits = [float(lo + frac * (hi - lo)) for lo, hi in zip(problem.lo, problem.hi)]
    totals, _ = enumerate_all(table)
    ok = np.ones(len(totals["omega"]), dtype=bool)
    for name, limit in zip(names, limits):
        ok &= totals[name] <= limit
    feasible = np.sort((totals["omega"][ok] - problem.cost_const) / problem.cost_scale)
    return problem, problem.scale_limits(limits), feasible
