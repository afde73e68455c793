"""``mpsearch allocate --max-drop``: accuracy-target mode needs a recipe; bad drops name the flag and the rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpsearch.cli import main
from mpsearch.recipe.specs import AllocationSpec


def _table(tmp_path: Path) -> Path:
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"records": [{"layer": "a", "w_bits": 8, "a_bits": 8, "omega": 1.0, "size_bytes": 8.0}]}))
    return path


def test_max_drop_on_a_table_says_it_needs_a_recipe(tmp_path: Path, capsys) -> None:
    rc = main(["allocate", "--table", str(_table(tmp_path)), "--max-drop", "0.5%", "-o", str(tmp_path / "p.yaml")])
    assert rc == 2
    assert "--max-drop needs --recipe" in capsys.readouterr().err
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize("bad", ["abc", "-1", "200%"])
def test_bad_max_drop_names_the_key(bad: str) -> None:
    with pytest.raises(Exception, match=r"AllocationSpec: max_drop must be a drop >= 0"):
        AllocationSpec(max_drop=bad if bad != "-1" else -1)


def test_recipe_key_accepts_number_and_percent() -> None:
    assert AllocationSpec(max_drop="0.5%").max_drop == "0.5%"
    assert AllocationSpec(max_drop=0.01, minimize="latency_ms").minimize == "latency_ms"
