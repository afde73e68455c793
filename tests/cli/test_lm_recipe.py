"""A language-model recipe end to end: the demo LM on the standard library's text, scored in bits
per byte (lower is better) by every step that scores a plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mpsearch.cli import main
from mpsearch.demo import bits_per_byte, load_demo_lm_run, text_batches
from mpsearch.pipeline.inputs import LM_EVAL_WINDOWS

MICRO = {
    "version": 1, "name": "lm", "seed": 0, "model": "gpt_micro",
    "data": {"source": "stdlib_text", "batch_size": 8, "calib_batches": 2},
    "sensitivity": {"method": "fisher", "n_batches": 1, "settings": {"granularity": "per_batch"}},
    "hardware": {"profile": "gap8-pulp-nn", "w_bits": [2, 4, 8], "a_bits": [8]},
    "budgets": {"size_bytes": "uniform:w4a8"},
    "allocation": {"method": "ilp", "pareto": {"resource": "size_bytes", "n_points": 3}},
    "finetune": {"epochs": 1, "lr": 0.001, "batch_size": 8},
    "validation": {"split": "test", "integer": False},
}


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("lm")
    recipe = d / "lm.yaml"
    recipe.write_text(yaml.safe_dump(MICRO))
    assert main(["run", str(recipe), "--output-dir", str(d), "--quiet"]) == 0
    return d / "lm", json.loads((d / "lm" / "summary.json").read_text())


def test_lm_run_scores_bits_per_byte(lm_run):
    out, s = lm_run
    assert s["metric"] == {"task": "language_model", "metric": "bits_per_byte", "higher_is_better": False,
                           "unit": "bits/byte"}
    # the float model's figure is bits_per_byte over the first LM_EVAL_WINDOWS test windows
    run = load_demo_lm_run("gpt_micro")
    ctx = run.model.config.context
    want = bits_per_byte(run.model, text_batches(run.splits.test[: LM_EVAL_WINDOWS * ctx + 1], ctx, 64))
    assert s["float_accuracy"] == pytest.approx(want, rel=1e-12)
    assert 2.0 < want < 8.0  # trained a little: better than a uniform byte (8 bits), far from perfect
    # uniform 2-bit weights lose more than uniform 8-bit ones (lower is better)
    assert s["baselines"]["w2a8"]["acc_ptq"] > s["baselines"]["w8a8"]["acc_ptq"]
    report = (out / "report.md").read_text()
    assert "Bits per byte (lower is better) on the `test` split." in report
    assert "| plan | size (B) | latency (ms) | omega | bits/byte PTQ | bits/byte QAT | bits/byte integer |" in report
    assert f"| float32 | - | - | 0 | {want:.4f} | - | - |" in report


def test_lm_recipe_refuses_the_wrong_data(tmp_path: Path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(dict(MICRO, data=dict(MICRO["data"], source="digits"))))
    assert main(["run", str(path), "--output-dir", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "data.source must be 'stdlib_text' for the demo model 'gpt_micro' (the data it was trained on), " \
           "but got 'digits'" in err


def test_lm_recipe_with_llm_formats_and_a_format_budget(tmp_path: Path):
    """hardware.formats gives the linear/embedding layers weight-only candidates; the budget is the
    size of uniform w4a16g32, which is also drawn as a baseline; the plan fits it."""
    data = dict(MICRO, name="fmt", hardware={"profile": "x86-2core-int", "w_bits": [8], "a_bits": [8],
                                             "formats": ["w2a16g32", "w4a16g32", "w8a16", "w16a16"]},
                budgets={"size_bytes": "uniform:w4a16g32"}, finetune=None,
                validation={"split": "test", "integer": True})
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / "fmt.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--output-dir", str(tmp_path), "--quiet"]) == 0
    s = json.loads((tmp_path / "fmt" / "summary.json").read_text())
    base = s["baselines"]["w4a16g32"]
    assert s["budgets"]["absolute"]["size_bytes"] == base["size_bytes"]
    assert s["chosen"]["size_bytes"] <= base["size_bytes"]
    keys = {r["layer"]: r["key"] for r in s["layers"]}
    assert set(keys.values()) <= {"w2a16g32", "w4a16g32", "w8a16", "w16a16"}
    assert keys["tok_emb"] == keys["head"]  # one tied tensor, one format
    report = (tmp_path / "fmt" / "report.md").read_text()
    assert f"| `blocks.0.mlp.gate_proj` | linear | " in report
    # the executed program (weight-only layers on torch's kernels, float islands around them)
    # agrees with the simulation; the learned positions at arange(T) are a build-time constant
    v = s["validation"]
    assert v["top1_agreement"] >= 0.99 and abs(v["bits_per_token_int"] - v["bits_per_token_fake"]) < 0.01
    assert s["chosen"]["acc_int"] == v["bits_per_token_int"]
    assert not any(op.startswith("pos_emb") for op in v["float_ops"])
    assert any("weight_only_linear" in op for op in v["float_ops"])
    assert f"next-token predictions): top-1 agreement with the fake-quant simulation" in report


def test_format_budget_must_be_a_listed_format(tmp_path: Path, capsys):
    data = dict(MICRO, hardware={"profile": "x86-2core-int", "w_bits": [8], "a_bits": [8],
                                 "formats": ["w4a16g32", "w16a16"]}, budgets={"size_bytes": "uniform:w3a16g32"})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--output-dir", str(tmp_path), "--quiet"]) == 2
    assert ("budgets.size_bytes must be a uniform plan of one of hardware.formats (w4a16g32, w16a16), "
            "but got 'uniform:w3a16g32'") in capsys.readouterr().err
