"""The run pipeline's k-best step (``allocation.k_best``, issue #15 item 3): of the k best plans by omega,
the one with the lowest validation loss; checked against the plans and losses computed here independently."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpsearch.allocation import allocate, allocate_k_best
from mpsearch.core.plan import BitPlan
from mpsearch.errors import ConfigError
from mpsearch.pipeline import run_recipe, steps
from mpsearch.pipeline.guard import mean_loss
from mpsearch.recipe.load import recipe_from_dict
from mpsearch.report.progress import Progress
from mpsearch.recipe.specs import AllocationSpec


def _recipe(tmp_path: Path, k_best: int):
    return recipe_from_dict({
        "version": 1, "name": f"k{k_best}", "seed": 0, "model": "small_cnn",
        "data": {"source": "digits", "batch_size": 128, "calib_batches": 2},
        "sensitivity": {"method": "fisher", "n_batches": 1, "settings": {"granularity": "per_batch"}, "calibrate": False},
        "hardware": {"profile": "gap8-pulp-nn", "w_bits": [2, 4, 8], "a_bits": [8]},
        "budgets": {"size_bytes": "uniform:w4a8"},
        "allocation": {"method": "ilp", "k_best": k_best, "guard": False, "pareto": None},
        "validation": {"split": "test", "integer": False},
        "output": {"dir": str(tmp_path)},
    }, where="k.yaml")


def test_run_keeps_the_k_best_plan_with_the_lowest_val_loss(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, 4)
    result = run_recipe(recipe)
    plan = BitPlan.load(result.results_dir / "plan.yaml")
    prep = steps.prepare(recipe)
    table = steps.table_step(prep, steps.sensitivity_step(prep, Progress(enabled=False)))
    plans = allocate_k_best(table, prep.budgets, 4)
    losses = [mean_loss(steps.quantize_plan(prep, p), prep.inputs.task.loss_fn, prep.inputs.val) for p in plans]
    best = min(range(len(losses)), key=lambda i: (losses[i], i))
    assert {n: b.key for n, b in plan.layers.items()} == {n: b.key for n, b in plans[best].layers.items()}
    info = result.plan.meta["k_best"]
    assert info["val_losses"] == pytest.approx(losses, rel=1e-12) and info["picked_rank"] == best + 1
    assert info["omegas"] == sorted(info["omegas"])  # listed best omega first


def test_k_best_1_is_the_ilp_plan(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, 1)
    result = run_recipe(recipe)
    prep = steps.prepare(recipe)
    table = steps.table_step(prep, steps.sensitivity_step(prep, Progress(enabled=False)))
    ilp = allocate(table, prep.budgets)
    assert {n: b.key for n, b in result.plan.layers.items()} == {n: b.key for n, b in ilp.layers.items()}
    assert "k_best" not in result.plan.meta


def test_k_best_must_be_a_positive_int() -> None:
    with pytest.raises(ConfigError, match="k_best"):
        AllocationSpec(k_best=0)
