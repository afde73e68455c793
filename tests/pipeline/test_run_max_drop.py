"""``mpsearch run`` honours ``allocation.max_drop`` (issue #15 item 4): accuracy-target mode in the run pipeline.

The returned plan meets the drop on the validation split (checked here by quantizing it again and
measuring), the test drop is reported beside it (summary and report.md), the guard does not replace
a measured target plan, and an unreachable drop names the best drop the frontier reaches.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mpsearch.core.plan import BitPlan
from mpsearch.errors import InfeasibleBudgetError
from mpsearch.pipeline import run_recipe, steps
from mpsearch.recipe.load import recipe_from_dict


def _recipe(tmp_path: Path, max_drop, w_bits=(2, 4, 8)):
    return recipe_from_dict({
        "version": 1, "name": "target", "seed": 0, "model": "small_cnn",
        "data": {"source": "digits", "batch_size": 128, "calib_batches": 2},
        "sensitivity": {"method": "fisher", "n_batches": 1, "settings": {"granularity": "per_batch"}},
        "hardware": {"profile": "gap8-pulp-nn", "w_bits": list(w_bits), "a_bits": [8]},
        "budgets": {"size_bytes": "100%"},
        "allocation": {"method": "ilp", "max_drop": max_drop},
        "validation": {"split": "test", "integer": False},
        "output": {"dir": str(tmp_path)},
    }, where="target.yaml")


def test_run_returns_the_plan_within_the_drop_and_reports_the_test_drop(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "1%")
    result = run_recipe(recipe)
    t = result.summary["target"]
    float_val = t["float_val_metric"]
    assert t["max_drop"] == pytest.approx(0.01 * float_val)  # "1%" of the float validation accuracy
    # measured again, outside the run: the returned plan's validation accuracy and drop
    prep = steps.prepare(recipe)
    plan = BitPlan.load(result.results_dir / "plan.yaml")
    val = steps.metric(prep, steps.quantize_plan(prep, plan), prep.inputs.val)
    assert val == pytest.approx(t["val_metric"], abs=1e-12)
    assert float_val - val <= t["max_drop"] + 1e-12
    assert t["val_drop"] == pytest.approx(float_val - val, abs=1e-12)
    test = steps.metric(prep, steps.quantize_plan(prep, plan), prep.inputs.test)
    float_test = steps.metric(prep, prep.inputs.model, prep.inputs.test)
    assert t["test_metric"] == pytest.approx(test, abs=1e-12) and t["test_drop"] == pytest.approx(float_test - test, abs=1e-12)
    assert 1 <= t["target_evaluations"] <= t["target_frontier_points"]
    assert result.summary["guard"] is None  # a measured target plan is not swapped for a baseline
    # smaller than all-8-bit (1% leaves room to lower bits on digits)
    assert result.summary["totals"]["size_bytes"] < prep.resources.extremes("size_bytes")[1]
    report = (result.results_dir / "report.md").read_text()
    assert "## Accuracy target" in report
    assert re.search(r"\| test \| - \| [0-9.]+ \| [-0-9.e]+ \(metric", report)


def test_run_with_an_unreachable_drop_names_the_best_drop(tmp_path: Path) -> None:
    with pytest.raises(InfeasibleBudgetError, match=r"best drop on the size_bytes frontier is ([0-9.]+)") as err:
        run_recipe(_recipe(tmp_path, 0.0, w_bits=(2,)))
    best = err.value.smallest["max_drop"]
    assert best > 0.05  # all-2-bit small_cnn loses several points on digits
    assert f"{best:.6g}" in str(err.value)
