"""``mpsearch search`` and ``allocation.method: optuna`` on a small recipe: plans meet the budgets
and land within 1% of the ILP plan's omega on the same cost table."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mpsearch.allocation import allocate
from mpsearch.cli import main
from mpsearch.core import BitPlan

from cli_recipes import SMALL

RECIPE = dict(SMALL, name="explore", allocation={"method": "optuna", "n_trials": 40}, finetune={"epochs": 0},
              validation={"split": "test", "integer": False})


def _table_and_budgets(recipe_path: Path):
    """The cost table and absolute budgets the command builds (same steps, same seed)."""
    from mpsearch.pipeline import steps
    from mpsearch.recipe import load_recipe
    from mpsearch.report import progress

    with progress(True) as bars:
        prep = steps.prepare(load_recipe(recipe_path), None)
        table = steps.table_step(prep, steps.sensitivity_step(prep, bars))
    return table, prep.budgets


def _totals(table, plan: BitPlan) -> dict[str, float]:
    return table.totals(table.rows_for_plan(plan))


def test_search_command_plan_meets_budget_and_is_within_1pct_of_ilp(tmp_path: Path) -> None:
    recipe = tmp_path / "explore.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    out = tmp_path / "plan.yaml"
    assert main(["search", "--recipe", str(recipe), "--explorer", "optuna", "--n-trials", "40",
                 "-o", str(out), "--quiet"]) == 0
    plan = BitPlan.load(out)
    table, budgets = _table_and_budgets(recipe)
    # uniform W4A8 size by hand from the table
    w4 = sum(table.resources["size_bytes"][table.row_of(n, 4, 8)] for n in table.layers)
    assert budgets["size_bytes"] == pytest.approx(w4)
    got = _totals(table, plan)
    assert set(plan.layers) == set(table.layers)
    assert got["size_bytes"] <= budgets["size_bytes"] * (1 + 1e-9)
    ilp = allocate(table, budgets)
    assert got["omega"] <= ilp.objective * 1.01
    assert got["omega"] >= ilp.objective * (1 - 1e-9)  # the ILP is exact: nothing beats it


def test_recipe_with_optuna_allocation_runs_through_run_recipe(tmp_path: Path) -> None:
    from mpsearch.pipeline import run_recipe
    from mpsearch.recipe import load_recipe

    recipe_path = tmp_path / "explore.yaml"
    recipe_path.write_text(yaml.safe_dump(dict(RECIPE, output={"dir": str(tmp_path / "out")})))
    recipe = load_recipe(recipe_path)
    res = run_recipe(recipe)
    plan = BitPlan.load(res.results_dir / "plan.yaml")
    assert res.results_dir == tmp_path / "out" / "explore"
    assert plan.solver.startswith("optuna") and res.plan.solver == plan.solver
    table, budgets = _table_and_budgets(recipe_path)
    got = _totals(table, plan)
    assert got["size_bytes"] <= budgets["size_bytes"] * (1 + 1e-9)
    assert got["omega"] <= allocate(table, budgets).objective * 1.01
