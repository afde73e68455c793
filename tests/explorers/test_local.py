"""Local improvement: the ejection-chain neighbourhood reaches the brute-force optimum; turns."""

import numpy as np

from mpsearch.explorers._local import LocalSearch, is_local_turn
from mpsearch.explorers._space import SearchSpace
from mpsearch.testing.explorers import brute_force_optimum, random_table

TWO = {"size_bytes": "50%", "bops": "40%"}


def _descend(space, choice):
    local, steps = LocalSearch(space), 0
    while (nxt := local.propose(choice, [])) is not None:
        assert local.omega(nxt) < local.omega(choice) and space.is_feasible(nxt)
        choice, steps = nxt, steps + 1
    return choice, steps


def test_descent_from_repaired_all_max_reaches_brute_force_optimum_on_two_budgets():
    for seed in (1, 2, 3):
        table = random_table(5, (2, 4, 8), seed=seed, a_bits=(4, 8))  # 6^5 assignments
        space = SearchSpace(table, TWO)
        start = space.repair([len(u.keys) - 1 for u in space.units])
        best, _ = _descend(space, start)
        opt = brute_force_optimum(table, space.budgets)
        assert table.totals(space.rows(best))["omega"] <= opt * (1 + 1e-9)


def test_neighbours_are_feasible_improving_distinct_and_sorted():
    table = random_table(8, (2, 4, 8), seed=4, a_bits=(4, 8))
    space = SearchSpace(table, TWO)
    local = LocalSearch(space)
    start = space.repair([len(u.keys) - 1 for u in space.units])
    nbrs = local.neighbours(start)
    values = [v for v, _ in nbrs]
    assert values == sorted(values) and all(v < local.omega(start) for v in values)
    assert len({c for _, c in nbrs}) == len(nbrs) and all(space.is_feasible(c) for _, c in nbrs)
    # values are the table's omega over the free units (no pins here: the whole plan's omega)
    assert all(np.isclose(v, table.totals(space.rows(c))["omega"]) for v, c in nbrs)
    # proposals skip what was tried
    if nbrs:
        assert local.propose(start, [nbrs[0][1]]) == (list(nbrs[1][1]) if len(nbrs) > 1 else None)


def test_local_turns_are_spread_evenly():
    assert [is_local_turn(i, 0.5) for i in range(6)] == [False, True, False, True, False, True]
    assert sum(is_local_turn(i, 0.25) for i in range(100)) == 25
    assert not any(is_local_turn(i, 0.0) for i in range(10)) and all(is_local_turn(i, 1.0) for i in range(10))
