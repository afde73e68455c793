"""SearchSpace: budgets resolved like allocate(), repairs feasible, ties/pins, errors."""

import numpy as np
import pytest

from mpsearch import CostTable, InfeasibleBudgetError, UnknownNameError
from mpsearch.allocation import allocate
from mpsearch.explorers import SearchSpace, absolute_budgets
from mpsearch.testing.explorers import brute_force_optimum, random_table


def _hand_table():
    # two layers, sizes by hand: a: 8b=100, 4b=50, 2b=25 ; b: 8b=200, 2b=50
    recs = [
        {"layer": "a", "w_bits": 8, "a_bits": 8, "omega": 0.0, "size_bytes": 100.0},
        {"layer": "a", "w_bits": 4, "a_bits": 8, "omega": 0.5, "size_bytes": 50.0},
        {"layer": "a", "w_bits": 2, "a_bits": 8, "omega": 1.5, "size_bytes": 25.0},
        {"layer": "b", "w_bits": 8, "a_bits": 8, "omega": 0.0, "size_bytes": 200.0},
        {"layer": "b", "w_bits": 2, "a_bits": 8, "omega": 2.0, "size_bytes": 50.0},
    ]
    return CostTable.from_records(recs)


def test_relative_budget_matches_allocate_and_hand_value():
    t = _hand_table()
    # lo = 25 + 50 = 75, hi = 100 + 200 = 300 -> 40% = 75 + 0.4 * 225 = 165
    assert absolute_budgets(t, {"size_bytes": "40%"}) == {"size_bytes": 165.0}
    # with a pin on b at w8a8: lo = 225, hi = 300 -> 50% = 262.5 (as allocate resolves it)
    assert absolute_budgets(t, {"size_bytes": "50%"}, pins={"b": "w8a8"}) == {"size_bytes": 262.5}
    assert allocate(t, budgets={"size_bytes": "50%"}, pins={"b": "w8a8"}).meta["budgets"] == {"size_bytes": 262.5}


def test_units_sorted_cheapest_first_and_greedy_repair_is_optimal_here():
    t = _hand_table()
    space = SearchSpace(t, {"size_bytes": 165.0})
    assert [u.keys for u in space.units] == [("w2a8", "w4a8", "w8a8"), ("w2a8", "w8a8")]
    # all-8 (300 bytes) is infeasible; cheapest fix: b -> 2 bits (+2.0 omega, -150 B) gives 150 B;
    # the alternative a->2, b stays 8 gives 225 B > 165. Optimum by hand: a=8, b=2 (omega 2.0).
    fixed = space.repair([2, 1])
    assert space.keys_of(fixed) == {"a": "w8a8", "b": "w2a8"}
    assert t.totals(space.rows(fixed))["omega"] == 2.0 == brute_force_optimum(t, {"size_bytes": 165.0})


@pytest.mark.parametrize("repair", ["greedy", "haq"])
def test_repair_always_feasible_on_two_budgets(repair):
    t = random_table(8, (2, 4, 8), seed=5)
    space = SearchSpace(t, {"size_bytes": "30%", "bops": "40%"}, repair=repair)
    rng = np.random.default_rng(0)
    for _ in range(50):
        choice = [int(rng.integers(len(u.keys))) for u in space.units]
        fixed = space.repair(choice)
        assert space.is_feasible(fixed)
        if space.is_feasible(choice):
            assert fixed == choice  # feasible plans are left alone
        else:  # repair only lowers
            assert all(f <= c for f, c in zip(fixed, choice))


def test_haq_repair_lowers_last_layer_first():
    t = _hand_table()
    space = SearchSpace(t, {"size_bytes": 250.0}, repair="haq")
    # 300 B -> lower the last unit (b: 8 -> 2) first: 150 B fits
    assert space.keys_of(space.repair([2, 1])) == {"a": "w8a8", "b": "w2a8"}


def test_ties_share_one_unit_and_pins_remove_units():
    t = random_table(5, (2, 4, 8), seed=1, ties=[["l0", "l4"]])
    space = SearchSpace(t, None, pins={"l2": "w4a8"})
    assert [u.name for u in space.units] == ["l0", "l1", "l3"]
    assert space.units[0].layers == (0, 4)
    plan = space.plan([0, 1, 2])
    assert plan["l0"] == plan["l4"] and plan["l2"].key == "w4a8"


def test_infeasible_and_unknown_budgets_raise():
    t = _hand_table()
    with pytest.raises(InfeasibleBudgetError, match="size_bytes must be >= 75"):
        SearchSpace(t, {"size_bytes": 70.0})
    with pytest.raises(UnknownNameError, match="latency_ms"):
        SearchSpace(t, {"latency_ms": 1.0})
