"""The frontier after fine-tuning (``finetune.frontier_points``, issue #15 item 5): each recorded QAT
metric equals that of a frontier plan fine-tuned here independently with the same seed, and the
report's table lists exactly those points."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpsearch.allocation import pareto
from mpsearch.errors import ConfigError
from mpsearch.pipeline import run_recipe, steps
from mpsearch.pipeline.frontier_qat import spread_indices
from mpsearch.qat import FinetuneConfig, finetune_
from mpsearch.recipe.load import recipe_from_dict
from mpsearch.report.progress import Progress


def _raw(tmp_path: Path, frontier_points: object) -> dict:
    return {
        "version": 1, "name": f"fq{frontier_points}", "seed": 0, "model": "small_cnn",
        "data": {"source": "digits", "batch_size": 128, "calib_batches": 2},
        "sensitivity": {"method": "fisher", "n_batches": 1, "settings": {"granularity": "per_batch"}, "calibrate": False},
        "hardware": {"profile": "gap8-pulp-nn", "w_bits": [2, 4, 8], "a_bits": [8]},
        "budgets": {"size_bytes": "uniform:w4a8"},
        "allocation": {"method": "ilp", "k_best": 1, "guard": False, "pareto": {"resource": "size_bytes", "n_points": 5}},
        "finetune": {"epochs": 1, "lr": 0.001, "batch_size": 64, "frontier_points": frontier_points},
        "validation": {"split": "test", "integer": False},
        "output": {"dir": str(tmp_path)},
    }


def test_spread_indices_by_hand() -> None:
    assert spread_indices(10, 3) == [0, 4, 9]  # round(4.5) = 4 (banker's rounding), both ends kept
    assert spread_indices(5, 2) == [0, 4]
    assert spread_indices(5, 1) == [2]
    assert spread_indices(3, 8) == [0, 1, 2]
    assert spread_indices(5, 0) == []


def test_each_point_matches_an_independent_finetune(tmp_path: Path) -> None:
    recipe = recipe_from_dict(_raw(tmp_path, 2), where="fq.yaml")
    result = run_recipe(recipe)
    rows = result.summary["frontier_qat"]
    prep = steps.prepare(recipe)
    table = steps.table_step(prep, steps.sensitivity_step(prep, Progress(enabled=False)))
    front = pareto(table, "size_bytes", 5, prep.budgets.without("size_bytes"), rules=prep.profile.rules)
    picked = spread_indices(len(front.points), 2)
    assert len(front.points) >= 2 and [r["frontier_index"] for r in rows] == picked == [0, len(front.points) - 1]
    val = prep.inputs.split("test")
    for r in rows:
        plan = front.points[r["frontier_index"]]
        q = steps.quantize_plan(prep, plan)
        assert r["size_bytes"] == pytest.approx(plan.totals["size_bytes"], rel=1e-12)
        assert r["acc_ptq"] == steps.metric(prep, q, val)
        finetune_(q, prep.inputs.train, FinetuneConfig(epochs=1, lr=0.001, seed=0, batch_size=64))
        assert r["acc_qat"] == steps.metric(prep, q, val)
    assert rows[0]["acc_qat"] != rows[0]["acc_ptq"]  # the fine-tuning changed the smallest point
    text = (result.results_dir / "report.md").read_text()
    listed = [line for line in text.splitlines() if line.startswith("| frontier point ")]
    assert [line.split("|")[1].strip() for line in listed] == [f"frontier point {i + 1}" for i in picked]
    for line, r in zip(listed, rows):
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert cells[1] == f"{r['size_bytes']:.6g}"
        assert cells[3:] == [f"{100 * r['acc_ptq']:.2f}%", f"{100 * r['acc_qat']:.2f}%"]


def test_zero_turns_it_off(tmp_path: Path) -> None:
    recipe = recipe_from_dict(_raw(tmp_path, 0), where="fq.yaml")
    result = run_recipe(recipe)
    assert result.summary["frontier_qat"] == [] and "frontier_qat_s" not in result.summary["timings_s"]
    assert "Frontier before and after QAT" not in (result.results_dir / "report.md").read_text()


@pytest.mark.parametrize("bad", [-1, 1.5, "3"])
def test_bad_frontier_points_names_file_key_rule_value(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ConfigError) as e:
        recipe_from_dict(_raw(tmp_path, bad), where="fq.yaml")
    assert str(e.value) == ("fq.yaml: finetune.frontier_points must be an integer >= 0 (0: no frontier point is "
                            f"fine-tuned), but got {bad!r}")
