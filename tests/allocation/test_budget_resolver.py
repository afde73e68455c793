"""Budgets read once (Budgets.parse / resolve_budgets) and checked from the resources alone (check_feasible)."""

from __future__ import annotations

import pytest

import mpsearch.allocation.diagnose as diagnose
from mpsearch.allocation import (Budget, Budgets, UniformBudget, allocate, check_feasible, pareto, resolve_budgets,
                                 uniform_plan)
from mpsearch.core.cost_table import CostTable
from mpsearch.errors import ConfigError, InfeasibleBudgetError, UnknownNameError


def three_layers() -> CostTable:
    # size_bytes = 100 x n x w; latency by hand; omega drops with more bits
    recs = []
    for name, n, lat in (("a", 1, (1.0, 3.0)), ("b", 2, (2.0, 5.0)), ("c", 3, (1.5, 2.0))):
        for (w, om), lt in zip(((4, 0.8 * n), (8, 0.1 * n)), lat):
            recs.append({"layer": name, "w_bits": w, "a_bits": 8, "omega": om, "size_bytes": 100 * n * w, "latency_ms": lt})
    return CostTable.from_records(recs)


def trade_off() -> CostTable:
    # fewer bits: smaller but slower. Assignments (size, latency): 44 (1200, 8), 84 (1600, 6),
    # 48 (2000, 5), 88 (2400, 3)
    recs = [{"layer": "a", "w_bits": 4, "a_bits": 8, "omega": 1.0, "size_bytes": 400, "latency_ms": 3.0},
            {"layer": "a", "w_bits": 8, "a_bits": 8, "omega": 0.0, "size_bytes": 800, "latency_ms": 1.0},
            {"layer": "b", "w_bits": 4, "a_bits": 8, "omega": 1.0, "size_bytes": 800, "latency_ms": 5.0},
            {"layer": "b", "w_bits": 8, "a_bits": 8, "omega": 0.0, "size_bytes": 1600, "latency_ms": 2.0}]
    return CostTable.from_records(recs)


class _CountingSolver(diagnose.ExactSolver):
    runs = 0

    def solve(self, *args, **kwargs):
        type(self).runs += 1
        return super().solve(*args, **kwargs)


@pytest.fixture
def solver_runs(monkeypatch):
    _CountingSolver.runs = 0
    monkeypatch.setattr(diagnose, "ExactSolver", _CountingSolver)
    return _CountingSolver


def test_parse_types_every_form_and_reads_as_written():
    given = {"size_bytes": "120k", "bops": "50%", "latency_ms": "uniform:w4a8"}
    b = Budgets.parse(given)
    assert b.entries == (Budget("size_bytes", 120e3), Budget("bops", 0.5, True), UniformBudget("latency_ms", 4, 8))
    assert dict(b) == given and b == given and b["size_bytes"] == "120k" and "bops" in b and len(b) == 3
    assert not b.resolved and Budgets.parse(b) is b
    assert b.without("bops").resources == ("size_bytes", "latency_ms")
    assert str(b) == "size_bytes=120000, bops=50%, latency_ms=uniform:w4a8"
    assert Budgets.parse(["size_bytes=1.5M", ("bops", 2.5)], relative={"latency_ms": 0.25}).entries == (
        Budget("size_bytes", 1.5e6), Budget("bops", 2.5), Budget("latency_ms", 0.25, True))
    assert dict(Budgets.parse(None)) == {}


def test_resolve_makes_uniform_budgets_their_totals():
    table = three_layers()
    r = resolve_budgets({"size_bytes": "uniform:w4a8", "latency_ms": "uniform:w8a8"}, table)
    # W4A8: 400 + 800 + 1200 bytes; W8A8: 3 + 5 + 2 ms
    assert r.entries == (Budget("size_bytes", 2400.0), Budget("latency_ms", 10.0)) and r.resolved
    assert dict(r) == {"size_bytes": 2400.0, "latency_ms": 10.0}
    assert uniform_plan(table, 4, 8)[0].totals == {"size_bytes": 2400.0, "latency_ms": 4.5}
    # a resolved value is kept as it is
    assert resolve_budgets(r, table) is r
    # allocate reads the same syntax: only all-W4 fits 2400 bytes
    plan = allocate(table, {"size_bytes": "uniform:w4a8"})
    assert plan.meta["budgets"] == {"size_bytes": 2400.0} and plan.objective == pytest.approx(4.8)
    assert allocate(table, r.without("latency_ms")).layers == plan.layers


def test_resolve_errors_name_where_key_rule_and_value():
    table = three_layers()
    with pytest.raises(UnknownNameError) as info:
        resolve_budgets({"size_byte": 10}, table, where="r.yaml: budgets")
    msg = str(info.value)
    assert msg.startswith("r.yaml: budgets: unknown resource 'size_byte'") and "did you mean 'size_bytes'" in msg
    with pytest.raises(ConfigError, match=r"^--budget: size_bytes must be a uniform plan of valid bit-widths .* "
                                          r"but got 'uniform:w9a8'$"):
        Budgets.parse(["size_bytes=uniform:w9a8"], where="--budget")
    with pytest.raises(ConfigError, match=r"^--budget: size_bytes must be a number .*uniform:w4a8.*but got 'lots'$"):
        Budgets.parse(["size_bytes=lots"], where="--budget")
    with pytest.raises(ConfigError, match="each resource must be budgeted once, but 'size_bytes' appears twice"):
        Budgets.parse(["size_bytes=1k", ("size_bytes", 5)])
    with pytest.raises(ConfigError, match="^Budgets: each resource must be budgeted once"):
        Budgets((Budget("bops", 1.0), Budget("bops", 2.0)))


def test_one_budget_is_checked_without_a_solver(solver_runs):
    table = three_layers()
    assert check_feasible(table, {"size_bytes": "50%"}) == {"size_bytes": 3600.0}
    with pytest.raises(InfeasibleBudgetError) as info:
        check_feasible(table, {"size_bytes": "1k"}, where="r.yaml", fix_alternative=", or allow lower bits")
    assert str(info.value) == ("r.yaml: budgets.size_bytes must be >= 2400 (the smallest total any plan reaches with "
                               "these candidates), but got '1k'; fix: raise it to at least 2400, or allow lower bits")
    assert info.value.smallest == {"size_bytes": 2400.0}
    # a pin raises the smallest total: c at w8 -> 400 + 800 + 2400
    with pytest.raises(InfeasibleBudgetError, match=r"must be >= 3600 \(.* with these candidates and pins\)"):
        check_feasible(table, {"size_bytes": 3000}, pins={"c": "w8a8"})
    assert solver_runs.runs == 0


def test_several_budgets_are_checked_by_one_resource_ilp(solver_runs):
    table = trade_off()
    # 2000 bytes and 5 ms: only 48 meets both
    assert check_feasible(table, {"size_bytes": 2000, "latency_ms": 5.0}) == {"size_bytes": 2000.0, "latency_ms": 5.0}
    assert solver_runs.runs == 1
    # each alone is fine (1200 bytes, 3 ms are reachable); together they conflict
    with pytest.raises(InfeasibleBudgetError) as info:
        check_feasible(table, {"size_bytes": 1300, "latency_ms": 5.0}, where="t.json", fix_subject="the --budget values")
    err = info.value
    assert err.smallest == {"size_bytes": 2000.0, "latency_ms": 8.0}
    assert str(err) == ("t.json: budgets must be reachable, but size_bytes <= 1300 cannot be met: the smallest "
                        "size_bytes under the other budgets is 2000; latency_ms <= 5 cannot be met: the smallest "
                        "latency_ms under the other budgets is 8; fix: raise the --budget values to the smallest "
                        "value named")
    # joint=False checks each budget alone only
    assert check_feasible(table, {"size_bytes": 1300, "latency_ms": 5.0}, joint=False) == {"size_bytes": 1300.0,
                                                                                            "latency_ms": 5.0}


def test_pareto_takes_the_typed_value():
    table = trade_off()
    typed = pareto(table, "size_bytes", 4, Budgets.parse({"latency_ms": "50%"}))
    raw = pareto(table, "size_bytes", 4, {"latency_ms": "50%"})
    assert [p.layers for p in typed.points] == [p.layers for p in raw.points]
    assert typed.budgets == raw.budgets == {"latency_ms": 5.5}  # 3 + 0.5 x (8 - 3)


def test_uniform_budget_of_an_llm_format():
    """``uniform:w3a16g128`` keeps its format key; the plain pair's key stays None."""
    from mpsearch.allocation import Budgets, UniformBudget

    b = Budgets.parse({"size_bytes": "uniform:w3a16g128", "bops": "uniform:w4a8"})
    fmt, plain = b.entries
    assert (fmt.w_bits, fmt.a_bits, fmt.key, fmt.written) == (3, 16, "w3a16g128", "uniform:w3a16g128")
    assert (plain.key, plain.written) == (None, "uniform:w4a8")
    with pytest.raises(Exception, match="UniformBudget: key must be a format of w4a8, but got 'w3a16g128'"):
        UniformBudget("size_bytes", 4, 8, key="w3a16g128")


def test_a_uniform_budget_no_layer_can_take_is_refused():
    """uniform:w2a8 on a table of w8a8/w4a8 candidates would be the widest plan's total (the
    loosest budget) in disguise; it is refused, listing the candidates."""
    with pytest.raises(ConfigError) as info:
        resolve_budgets({"size_bytes": "uniform:w2a8"}, three_layers())
    assert str(info.value) == ("budgets: size_bytes must be a uniform plan that some layer can take "
                               "(candidates: w4a8, w8a8), but got 'uniform:w2a8'")


def test_uniform_weight_only_pair_is_a_format_budget():
    """``uniform:w8a16`` names the weight-only format w8a16 (a_bits 16), not an integer pair."""
    from mpsearch.allocation import Budgets

    (b,) = Budgets.parse({"size_bytes": "uniform:w8a16"}).entries
    assert (b.w_bits, b.a_bits, b.key, b.written) == (8, 16, "w8a16", "uniform:w8a16")
