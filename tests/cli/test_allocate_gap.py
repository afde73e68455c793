"""``mpsearch allocate --gap-rel``: the default is allocation's DEFAULT_GAP_REL, 0 proves the optimum,
and a bad value stops with a message naming the flag and the rule."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mpsearch.allocation import DEFAULT_GAP_REL
from mpsearch.cli import main
from mpsearch.commands import allocate as allocate_cmd
from mpsearch.core.plan import BitPlan

# Three layers, candidates (omega, size_bytes); budget 30 bytes. By hand, the 8 assignments:
# a8 b8 c8 = 32 B (over); a8 b8 c4 = 28 B, omega 1+0+2 = 3 <- the optimum; a4 b8 c8 = 28 B, 5;
# a4 b8 c4 = 24 B, 7; a8 b4 c8 = 24 B, 5; a8 b4 c4 = 20 B, 7; a4 b4 c8 = 20 B, 9; a4 b4 c4 = 16 B, 11.
RECORDS = [
    {"layer": "a", "w_bits": 8, "a_bits": 8, "omega": 1.0, "size_bytes": 8.0},
    {"layer": "a", "w_bits": 4, "a_bits": 8, "omega": 5.0, "size_bytes": 4.0},
    {"layer": "b", "w_bits": 8, "a_bits": 8, "omega": 0.0, "size_bytes": 16.0},
    {"layer": "b", "w_bits": 4, "a_bits": 8, "omega": 4.0, "size_bytes": 8.0},
    {"layer": "c", "w_bits": 8, "a_bits": 8, "omega": 0.0, "size_bytes": 8.0},
    {"layer": "c", "w_bits": 4, "a_bits": 8, "omega": 2.0, "size_bytes": 4.0},
]


def _table(tmp_path: Path) -> Path:
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"records": RECORDS}))
    return path


def test_gap_zero_proves_the_hand_optimum(tmp_path: Path, capsys) -> None:
    out = tmp_path / "plan.yaml"
    assert main(["allocate", "--table", str(_table(tmp_path)), "--budget", "size_bytes=30",
                 "--gap-rel", "0", "-o", str(out)]) == 0
    plan = BitPlan.load(out)
    assert plan.status == "optimal" and plan.gap == 0.0
    assert {n: b.key for n, b in plan.layers.items()} == {"a": "w8a8", "b": "w8a8", "c": "w4a8"}
    assert plan.objective == 3.0 and plan.totals["size_bytes"] == 28.0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "optimal: omega 3; size_bytes=28"
    # what proved it, by hand: the LP takes a8, c8 and 3/4 of b's upgrade (bound 2 < 3), so
    # group branching branches on b (b4: 5), then on c in the b8 child (c4: 3 = the plan; c8
    # needs half of a's upgrade: bound 3, pruned): 2 nodes
    assert re.fullmatch(r"solved in \d+\.\d{3} s by group branching \(2 nodes\)", lines[1]), lines[1]
    assert lines[2] == "a=w8a8 b=w8a8 c=w4a8"


def test_default_gap_matches_allocation_and_bad_values_exit_2(tmp_path: Path, capsys) -> None:
    assert allocate_cmd.DEFAULT_GAP_REL == DEFAULT_GAP_REL
    for bad in ("1", "-0.1", "tight"):
        with pytest.raises(SystemExit) as exc:
            main(["allocate", "--table", str(_table(tmp_path)), "--budget", "size_bytes=30", "--gap-rel", bad])
        assert exc.value.code == 2
        assert f"--gap-rel must be a number in [0, 1) (0 proves the optimum), but got {bad!r}" in capsys.readouterr().err
