"""#21: ``mpsearch allocate --recipe`` and ``mpsearch search`` guard their plan as ``mpsearch run`` does:
meta['guard'] in the written plan, and one printed line saying whether the guard changed the plan and why."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mpsearch.cli import main
from mpsearch.core import BitPlan

from cli_recipes import SMALL

RECIPE = dict(SMALL, name="guarded-cli", finetune={"epochs": 0}, validation={"split": "test", "integer": False})


def _write(tmp_path: Path, **allocation) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(dict(RECIPE, allocation={"method": "ilp", "pareto": None, **allocation})))
    return path


def _val_score(recipe_path: Path, plan: BitPlan) -> float:
    """The plan's val accuracy, measured here apart from the guard (PTQ on the calibration batches)."""
    from mpsearch.pipeline import steps
    from mpsearch.recipe import load_recipe

    prep = steps.prepare(load_recipe(recipe_path), None)
    return steps.metric(prep, steps.quantize_plan(prep, plan), prep.inputs.val)


def test_allocate_recipe_guards_the_plan_and_says_so(tmp_path: Path, capsys) -> None:
    from mpsearch.allocation import uniform_plan
    from mpsearch.core.io import read_structured
    from mpsearch.pipeline import steps
    from mpsearch.recipe import load_recipe
    from mpsearch.report import progress

    recipe = _write(tmp_path)
    out = tmp_path / "plan.yaml"
    assert main(["allocate", "--recipe", str(recipe), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    g = read_structured(out)["meta"]["guard"]
    line = [x for x in printed.splitlines() if x.startswith("guard: ")]
    assert len(line) == 1 and g["reason"] in line[0]
    assert line[0].startswith("guard: changed the plan" if g["changed"] else "guard: kept the plan")
    assert g["split"] == "val" and g["higher_is_better"] is True
    assert g["tie_margin"] == pytest.approx(1 / 359)  # accuracy: one of the 359 val images is a tie
    # the uniform w4a8 figure is that plan's val accuracy, measured again here
    with progress(True) as bars:
        prep = steps.prepare(load_recipe(recipe), None)
        table = steps.table_step(prep, steps.sensitivity_step(prep, bars))
    u4 = uniform_plan(table, 4, 8)[0]
    assert g["values"]["uniform w4a8"] == pytest.approx(_val_score(recipe, u4), abs=1e-12)
    # never worse than a uniform plan within the budget, on val
    plan = BitPlan.load(out)
    assert _val_score(recipe, plan) == pytest.approx(g["values"][g["chosen"]], abs=1e-12)
    assert all(g["values"][g["chosen"]] >= v for k, v in g["values"].items() if k.startswith("uniform"))


def test_allocate_recipe_with_guard_off_prints_no_guard_line(tmp_path: Path, capsys) -> None:
    from mpsearch.core.io import read_structured

    out = tmp_path / "plan.yaml"
    assert main(["allocate", "--recipe", str(_write(tmp_path, guard=False)), "-o", str(out)]) == 0
    assert "guard:" not in capsys.readouterr().out
    assert "guard" not in read_structured(out).get("meta", {})


def test_search_guards_its_best_plan(tmp_path: Path, capsys) -> None:
    from mpsearch.core.io import read_structured

    recipe = _write(tmp_path)
    out = tmp_path / "plan.yaml"
    assert main(["search", "--recipe", str(recipe), "--explorer", "optuna", "--n-trials", "20", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    g = read_structured(out)["meta"]["guard"]
    assert sum(x.startswith("guard: ") for x in printed.splitlines()) == 1
    assert g["reason"] in printed
    assert "mixed" in g["values"] and any(k.startswith("uniform") for k in g["values"])
    assert all(g["values"][g["chosen"]] >= v for k, v in g["values"].items() if k.startswith("uniform"))
