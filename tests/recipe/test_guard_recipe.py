"""Recipe keys of #21 (sensitivity.calibrate*, allocation.guard) and a run with sensitivity.method: empirical (#18 item 4)."""

from __future__ import annotations

import copy

import pytest
import yaml

from mpsearch.errors import ConfigError
from mpsearch.pipeline import run_recipe
from mpsearch.recipe import AllocationSpec, SensitivitySpec, recipe_from_dict

RECIPE = {
    "version": 1, "name": "guarded", "seed": 0, "model": "small_cnn",
    "data": {"source": "digits", "batch_size": 128, "calib_batches": 2},
    "sensitivity": {"method": "empirical", "n_batches": 1, "settings": {"w_bits": [2, 4, 8]}},
    "hardware": {"profile": "gap8-pulp-nn", "w_bits": [2, 4, 8], "a_bits": [8]},
    "budgets": {"size_bytes": "uniform:w4a8"},
    "allocation": {"method": "ilp", "pareto": None},
    "validation": {"split": "test", "integer": False},
}


def test_guard_and_calibration_are_on_by_default():
    r = recipe_from_dict({"version": 1, "model": "small_cnn"})
    assert r.allocation.guard is True and r.sensitivity.calibrate is True
    assert (r.sensitivity.calibrate_factor, r.sensitivity.calibrate_max_evaluations) == (2.0, 64)
    assert AllocationSpec().guard is True and SensitivitySpec().calibrate is True


@pytest.mark.parametrize("section, key, value, rule", [
    ("allocation", "guard", "yes", "true or false"),
    ("sensitivity", "calibrate", 1, "true or false"),
    ("sensitivity", "calibrate_factor", 0.5, ">= 1"),
    ("sensitivity", "calibrate_max_evaluations", -1, ">= 0"),
])
def test_bad_values_name_the_key(section, key, value, rule):
    data = {"version": 1, "model": "small_cnn", section: {key: value}}
    with pytest.raises(ConfigError, match=rf"r.yaml: {section}.{key} must be .*{rule}"):
        recipe_from_dict(data, where="r.yaml")


def test_empirical_recipe_runs_guarded(tmp_path):
    data = copy.deepcopy(RECIPE)
    data["output"] = {"dir": str(tmp_path)}
    result = run_recipe(recipe_from_dict(data))
    g = result.plan.meta["guard"]
    assert g["split"] == "val" and g["higher_is_better"] is True
    # the returned plan scores at least as well on the val split as every uniform plan within the budget
    returned = g["values"][g["chosen"]]
    assert all(returned >= v for k, v in g["values"].items() if k.startswith("uniform"))
    assert result.summary["guard"]["chosen"] == g["chosen"]
    assert result.summary["sensitivity"]["method"] == "empirical"
    saved = yaml.safe_load((result.results_dir / "plan.yaml").read_text())
    assert saved["meta"]["guard"]["changed"] == g["changed"]
    assert "## Guard and measured omega" in (result.results_dir / "report.md").read_text()
