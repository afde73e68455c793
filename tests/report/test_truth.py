"""The report tells the truth (#18 item 6): what closed the plan and in how long, the nearest uniform
plan in size (and plainly when uniform wins), the LSB's size, and why the frontier has fewer points."""

from __future__ import annotations

import copy

from mpsearch.report.markdown import render_report
from mpsearch.report.truth import nearest_uniform, pareto_note, solved_by

# the figures of the demo run (runs/demo, seed 0) that the issue quotes
SUMMARY = {
    "recipe": "recipes/demo.yaml", "name": "demo", "model": "resnet_tiny", "seed": 0,
    "profile": {"name": "gap8-pulp-nn", "source": "datasheet", "n_lut_entries": 0},
    "sensitivity": {"method": "hessian", "n_batches": 2},
    "budgets": {"given": {"size_bytes": "uniform:w4a8"}, "absolute": {"size_bytes": 20050.0}},
    "allocation": {"method": "ilp", "solver": "cbc", "status": "optimal", "optimal": True, "solve_time_s": 0.0123,
                   "meta": {"closed_by": "branching", "lp": "highs", "branch_nodes": 3, "branch_lps": 6}},
    "layers": [], "totals": {"size_bytes": 19130.0}, "objective": 0.001367,
    "metric": {"task": "classification", "metric": "accuracy", "higher_is_better": True, "unit": "fraction"},
    "float_accuracy": 0.9833,
    "chosen": {"size_bytes": 19130.0, "omega": 0.001367, "acc_ptq": 0.9777, "acc_qat": 0.9777, "acc_int": 0.9777},
    "baselines": {"w8a8": {"size_bytes": 38970.0, "omega": 8.1e-6, "acc_ptq": 0.9833},
                  "w4a8": {"size_bytes": 20050.0, "omega": 0.0023, "acc_ptq": 0.9805, "acc_qat": 0.9861},
                  "w2a8": {"size_bytes": 10590.0, "omega": 0.0558, "acc_ptq": 0.5599}},
    "finetune": None,
    "validation": {"n_images": 359, "accuracy_int": 0.9777, "accuracy_fake": 0.9777, "top1_agreement": 1.0,
                   "within_1_lsb": 0.9429, "mean_abs_lsb": 227.38, "max_abs_lsb": 16986.0,
                   "output_scale": 1.0994702458223544e-06},
    "validation_split": "test", "inputs": {}, "timings_s": {"total_s": 10.0},
    "frontier": [{"size_bytes": 10590.0 + 2800 * i, "omega": 0.05 / (i + 1), "acc_ptq": 0.98} for i in range(10)],
    "pareto_resource": "size_bytes", "pareto_n_points": 12, "n_layers": 9,
}


def test_report_names_branching_not_cbc_and_gives_the_solve_time():
    text = render_report(SUMMARY)
    assert "Solved by group branching on HiGHS LPs in 12.3 ms (3 nodes, 6 LPs)" in text
    assert "the MIP solver (CBC) was not called" in text
    assert "solver cbc" not in text


def test_solved_by_each_way_the_allocator_closes_a_plan():
    s = copy.deepcopy(SUMMARY)
    s["allocation"]["meta"] = {"closed_by": "mip", "lp": "highs"}
    assert solved_by(s) == "the CBC MIP solver on the core left after HiGHS LP reduced-cost fixing in 12.3 ms"
    s["allocation"]["meta"] = {"closed_by": "fixing", "lp": "cbc"}
    assert solved_by(s).startswith("the CBC LP relaxation and reduced-cost fixing in 12.3 ms")
    s["allocation"]["solve_time_s"] = None
    s["allocation"]["meta"] = {"closed_by": "gap", "lp": "highs"}
    assert solved_by(s).startswith("the HiGHS LP relaxation: its rounded plan was within the gap")


def test_chosen_plan_is_compared_with_the_nearest_uniform_and_a_uniform_win_is_said_plainly():
    assert nearest_uniform(SUMMARY["chosen"], SUMMARY["baselines"])[0] == "w4a8"  # 20050 B, not W8A8's 38970
    text = render_report(SUMMARY)
    assert "Nearest uniform plan in size: **W4A8** (20050 B; the chosen plan is 95% of it)." in text
    assert "**Uniform W4A8 is better than the chosen plan after PTQ: 98.05% vs 97.77%.**" in text
    assert "**Uniform W4A8 is better than the chosen plan after QAT: 98.61% vs 97.77%.**" in text
    assert "of uniform W8A8's size" not in text
    s = copy.deepcopy(SUMMARY)
    s["chosen"]["acc_ptq"], s["chosen"]["acc_qat"] = 0.9833, 0.9861
    text = render_report(s)
    assert "After PTQ the chosen plan beats uniform W4A8: 98.33% vs 98.05%." in text
    assert "After QAT the chosen plan and uniform W4A8 score the same: 98.61%." in text
    assert "is better than the chosen plan" not in text


def test_lsb_errors_carry_the_lsb_size():
    text = render_report(SUMMARY)
    assert ("logits within 1 LSB 94.29%, where 1 LSB = 1.1e-06 in logit units "
            "(mean |diff| 227.380 LSB = 0.00025, max 16986.0 LSB = 0.0187)") in text


def test_fewer_pareto_points_than_asked_are_explained():
    text = render_report(SUMMARY)
    assert "12 budgets were asked" in text and "2 of them gave a plan already found" in text
    assert "so 10 distinct plans remain" in text and "With 9 layers" in text
    s = dict(SUMMARY, pareto_n_points=10)
    assert pareto_note(s) == "" and "budgets were asked" not in render_report(s)
