"""CostTable from plain records: layout, totals, errors."""

import numpy as np
import pytest

from mpsearch import ConfigError, CostTable, UnknownNameError


def _records():
    return [
        {"layer": "a", "w_bits": 8, "a_bits": 8, "omega": 0.0, "size_bytes": 100.0, "bops": 6400.0},
        {"layer": "a", "w_bits": 4, "a_bits": 8, "omega": 0.5, "size_bytes": 50.0, "bops": 3200.0},
        {"layer": "b", "w_bits": 8, "a_bits": 8, "omega": 0.0, "size_bytes": 200.0, "bops": 12800.0},
        {"layer": "b", "w_bits": 2, "a_bits": 8, "omega": 2.0, "size_bytes": 50.0, "bops": 3200.0},
        {"layer": "a", "w_bits": 2, "a_bits": 8, "omega": 1.5, "size_bytes": 25.0, "bops": 1600.0},
    ]


def test_layout_groups_rows_by_layer_in_first_seen_order():
    t = CostTable.from_records(_records())
    assert t.layers == ("a", "b")
    assert t.offsets.tolist() == [0, 3, 5]
    assert [c.key for c in t.candidates[0]] == ["w8a8", "w4a8", "w2a8"]
    assert t.omega.tolist() == [0.0, 0.5, 1.5, 0.0, 2.0]
    assert t.resource_names == ("bops", "size_bytes")


def test_totals_plan_and_extremes():
    t = CostTable.from_records(_records())
    rows = [t.row_of("a", 4, 8), t.row_of("b", 2, 8)]
    assert rows == [1, 4]
    assert t.totals(rows) == {"bops": 6400.0, "size_bytes": 100.0, "omega": 2.5}
    plan = t.plan_from_rows(rows, solver="test")
    assert plan.objective == 2.5 and plan.totals["size_bytes"] == 100.0
    assert np.array_equal(t.rows_for_plan(plan), rows)
    assert t.extremes("size_bytes") == (25.0 + 50.0, 100.0 + 200.0)
    assert CostTable.from_records(t.to_records()).to_records() == t.to_records()


def test_errors_name_the_record_and_rule():
    recs = _records()
    recs[3] = dict(recs[3], size_bytes=float("nan"))
    with pytest.raises(ConfigError, match=r"\[3\]\.size_bytes must be a finite number"):
        CostTable.from_records(recs)
    recs = _records()
    del recs[2]["bops"]
    with pytest.raises(ConfigError, match=r"\[2\] must have the same resources"):
        CostTable.from_records(recs)
    with pytest.raises(ConfigError, match="w4a8 appears twice"):
        CostTable.from_records(_records() + [_records()[1]])
    with pytest.raises(UnknownNameError, match="unknown layer 'c'"):
        CostTable.from_records(_records(), ties=[["a", "c"]])
    with pytest.raises(ConfigError, match="tied layers must have the same candidates"):
        CostTable.from_records(_records(), ties=[["a", "b"]])
    with pytest.raises(ConfigError, match=r"candidate must be one of \['w8a8', 'w2a8'\], but got w4a8"):
        CostTable.from_records(_records()).row_of("b", 4, 8)
