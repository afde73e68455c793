"""``mpsearch export --format onnx`` writes a checked model and refuses a directory before any work."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import mpsearch as mps  # noqa: E402
from mpsearch.cli import main  # noqa: E402
from mpsearch.core import BitPlan  # noqa: E402
from mpsearch.demo import load_demo  # noqa: E402
from mpsearch.execution.export import onnx_proto  # noqa: E402
from mpsearch.quant import quantizable_layer_names  # noqa: E402


def test_cli_export_and_check(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    model, _ = load_demo("resnet_tiny")
    plan_path = tmp_path / "plan.yaml"
    BitPlan.uniform(quantizable_layer_names(model), 8, 8).save(plan_path)
    out = tmp_path / "demo.onnx"
    assert main(["export", "--format", "onnx", "--recipe", "recipes/demo.yaml", "--plan", str(plan_path),
                 "-o", str(out), "--report", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_examples"] == 359 and report["top1_agreement_fake"] >= 0.995
    assert report["top1_agreement_int"] >= 0.995
    assert "top-1 agreement" in capsys.readouterr().out
    plan = json.loads(onnx_proto.metadata(out)["mpsearch.plan"])
    assert plan["layers"]["conv1"]["w_bits"] == 8 and plan["solver"] == "uniform"
    assert main(["export", "--recipe", "recipes/demo.yaml", "--plan", str(plan_path), "-o", str(tmp_path)]) == 2
    assert "path must be a file path (not an existing directory)" in capsys.readouterr().err
    assert mps.export_onnx.__name__ == "export_onnx"
