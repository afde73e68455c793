"""The CLI end to end on a small recipe: files exist and hold the right content; exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mpsearch.cli import main
from mpsearch.core import BitPlan

from cli_recipes import SMALL



@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("cli")
    recipe = d / "small.yaml"
    recipe.write_text(yaml.safe_dump(SMALL))
    assert main(["run", str(recipe), "--output-dir", str(d / "a"), "--quiet"]) == 0
    assert main(["run", str(recipe), "--output-dir", str(d / "b"), "--quiet"]) == 0
    return recipe, d / "a" / "small", d / "b" / "small"


@pytest.fixture(scope="module")
def other_qat_seed(runs: tuple[Path, Path, Path]) -> Path:
    """The small recipe again with only ``finetune.seed`` changed (the recipe's seed stays 0)."""
    recipe, a, _ = runs
    data = dict(SMALL, finetune=dict(SMALL["finetune"], seed=1))
    path = recipe.parent / "small_seed1.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--output-dir", str(recipe.parent / "c"), "--quiet"]) == 0
    return recipe.parent / "c" / "small"


def test_results_directory_contents(runs: tuple[Path, Path, Path]) -> None:
    _, out, _ = runs
    for name in ("plan.yaml", "sensitivity.json", "sensitivity.csv", "cost_table.json", "pareto.csv", "pareto.json",
                 "pareto.png", "validation.json", "report.md", "summary.json", "integer_model"):
        assert (out / name).exists(), name
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.rglob(".*") if p.is_file()], "temp files left behind"
    summary = json.loads((out / "summary.json").read_text())
    plan = BitPlan.load(out / "plan.yaml")
    budget = summary["budgets"]["absolute"]["size_bytes"]
    # the budget is the size of uniform W4A8, and the plan meets it
    assert budget == summary["baselines"]["w4a8"]["size_bytes"]
    assert plan.totals["size_bytes"] <= budget
    table = json.loads((out / "cost_table.json").read_text())["records"]
    size = sum(r["size_bytes"] for r in table if (r["w_bits"], r["a_bits"]) == (plan.layers[r["layer"]].w_bits, plan.layers[r["layer"]].a_bits))
    assert size == pytest.approx(plan.totals["size_bytes"])
    # uniform W4A8 size by hand from the table
    assert budget == pytest.approx(sum(r["size_bytes"] for r in table if (r["w_bits"], r["a_bits"]) == (4, 8)))
    val = json.loads((out / "validation.json").read_text())
    assert val["n_images"] == 359 and val["top1_agreement"] >= 0.99
    assert summary["chosen"]["acc_int"] == val["accuracy_int"]


def test_pareto_csv_sorted_and_non_dominated(runs: tuple[Path, Path, Path]) -> None:
    _, out, _ = runs
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    assert len(rows) >= 2
    size = [float(r["size_bytes"]) for r in rows]
    omega = [float(r["omega"]) for r in rows]
    assert size == sorted(size)
    for i in range(len(rows)):
        for j in range(len(rows)):
            if i != j:  # no point is at least as good in both and better in one
                assert not (size[j] <= size[i] and omega[j] <= omega[i] and (size[j], omega[j]) != (size[i], omega[i]))
    assert all(0.0 <= float(r["acc_ptq"]) <= 1.0 for r in rows)


def test_report_names_every_layer_and_its_bits(runs: tuple[Path, Path, Path]) -> None:
    _, out, _ = runs
    plan = BitPlan.load(out / "plan.yaml")
    text = (out / "report.md").read_text()
    for name, b in plan.layers.items():
        assert f"| `{name}` |" in text and f"**w{b.w_bits}a{b.a_bits}**" in text
    assert "uniform W4A8" in text and "Latency numbers came from: roofline" in text
    assert "example order drawn from seed 0;" in text and "On 359 images one image is 0.28 points" in text


def test_report_shows_a_relative_budget_as_written(runs: tuple[Path, Path, Path]) -> None:
    from mpsearch.report.markdown import render_report

    _, out, _ = runs
    summary = json.loads((out / "summary.json").read_text())
    summary["budgets"]["given"]["latency_ms"] = "50%"  # a relative budget stays as written until allocation
    summary["budgets"]["absolute"]["latency_ms"] = "50%"
    total = summary["totals"]["latency_ms"]
    assert f"| latency_ms | `50%` | 50% | {total:.6g} |" in render_report(summary).splitlines()


def _integer_weights(out: Path) -> dict[str, np.ndarray]:
    with np.load(out / "integer_model" / "weights.npz") as z:
        return {k: z[k] for k in z.files}


def test_rerun_gives_the_same_plan_and_fine_tuned_model(runs: tuple[Path, Path, Path]) -> None:
    _, a, b = runs
    assert (a / "plan.yaml").read_bytes() == (b / "plan.yaml").read_bytes()
    # the exported integer model is built from the fine-tuned weights: equal arrays = same QAT, bit for bit
    wa, wb = _integer_weights(a), _integer_weights(b)
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["finetune"]["train_loss"] == sb["finetune"]["train_loss"] and sa["finetune"]["seed"] == 0


def test_finetune_seed_changes_qat_but_not_the_plan(runs: tuple[Path, Path, Path], other_qat_seed: Path) -> None:
    _, a, _ = runs
    c = other_qat_seed
    assert (a / "plan.yaml").read_bytes() == (c / "plan.yaml").read_bytes()
    sa, sc = (json.loads((d / "summary.json").read_text()) for d in (a, c))
    assert sc["finetune"]["seed"] == 1 and sa["finetune"]["train_loss"] != sc["finetune"]["train_loss"]
    wa, wc = _integer_weights(a), _integer_weights(c)
    assert wa.keys() == wc.keys() and any(not np.array_equal(wa[k], wc[k]) for k in wa)


def test_allocate_from_table_with_budget_flags(runs: tuple[Path, Path, Path], tmp_path: Path, capsys) -> None:
    _, out, _ = runs
    records = json.loads((out / "cost_table.json").read_text())["records"]
    lo = sum(min(r["size_bytes"] for r in records if r["layer"] == n) for n in {r["layer"] for r in records})
    hi = sum(max(r["size_bytes"] for r in records if r["layer"] == n) for n in {r["layer"] for r in records})
    plan_path = tmp_path / "p.yaml"
    assert main(["allocate", "--table", str(out / "cost_table.json"), "--budget", "size_bytes=50%",
                 "-o", str(plan_path)]) == 0
    plan = BitPlan.load(plan_path)
    assert plan.totals["size_bytes"] <= lo + 0.5 * (hi - lo) + 1e-9
    assert "wrote" in capsys.readouterr().out
    # an absolute budget below the smallest total: exit 2 with a message naming the fix
    code = main(["allocate", "--table", str(out / "cost_table.json"), "--budget", f"size_bytes={lo - 1}", "-o", str(plan_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "cost_table.json" in err and "fix: raise the --budget values" in err


def test_validate_command(runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    recipe, out, _ = runs
    report = tmp_path / "v.json"
    assert main(["validate", "--recipe", str(recipe), "--plan", str(out / "plan.yaml"), "-o", str(report), "--quiet"]) == 0
    v = json.loads(report.read_text())
    assert v["n_images"] == 359 and v["top1_agreement"] >= 0.99


def test_user_errors_exit_2(tmp_path: Path, capsys) -> None:
    bad = dict(SMALL, hardware={"profile": "no-such-device", "w_bits": [2, 4, 8]})
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(bad))
    assert main(["run", str(p), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: hardware.profile" in err and "Traceback" not in err
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert main(["allocate", "--table", "x.json", "--budget", "size_bytes"]) == 2


def test_help_explains_flags(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--output-dir" in out and "--budget" in out and "uniform:w4a8" in out
