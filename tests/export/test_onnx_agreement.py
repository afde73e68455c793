"""ONNX Runtime agrees with the simulation (and the integer program) on the demo models."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mpsearch.core import BitPlan, LayerBits  # noqa: E402
from mpsearch.demo import batches, load_demo, load_demo_lm_run, text_batches  # noqa: E402
from mpsearch.execution import to_integer  # noqa: E402
from mpsearch.execution.export import export_onnx, onnx_proto, validate_onnx  # noqa: E402
from mpsearch.quant import quantizable_layer_names, quantize  # noqa: E402


def _mixed(names: list[str]) -> BitPlan:
    cycle = [LayerBits(4, 8), LayerBits(2, 8), LayerBits(4, 4), LayerBits(8, 4)]
    layers = {n: cycle[i % len(cycle)] for i, n in enumerate(names)}
    layers[names[0]] = layers[names[-1]] = LayerBits(8, 8)
    return BitPlan(layers=layers, solver="test")


@pytest.mark.parametrize("name", ["small_cnn", "resnet_tiny", "mobilenet_tiny"])
@pytest.mark.parametrize("key", ["w8a8", "mixed"])
def test_demo_cnn_agreement(tmp_path, name: str, key: str) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model, splits = load_demo(name)
    names = quantizable_layer_names(model)
    plan = BitPlan.uniform(names, 8, 8) if key == "w8a8" else _mixed(names)
    q = quantize(model, plan, batches(splits.train, 256))
    path = export_onnx(q, splits.example_inputs(2), tmp_path / "m.onnx", plan=plan)
    onnx_proto.check(onnx_proto.load(path))
    report = validate_onnx(path, q, batches(splits.test, 512), imodel=to_integer(q, splits.example_inputs(2)))
    assert report.n_examples == 359
    assert report.top1_agreement_fake >= 0.995, str(report)
    assert report.top1_agreement_int >= 0.995, str(report)
    assert abs(report.accuracy_onnx - report.accuracy_fake) <= 0.003, str(report)


@pytest.mark.parametrize("key", ["w8a8", "w4a16g128"])
def test_demo_lm_next_token_agreement(tmp_path, key: str) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    run = load_demo_lm_run("gpt_tiny")
    names = quantizable_layer_names(run.model)
    plan = (BitPlan.uniform(names, 8, 8) if key == "w8a8"
            else BitPlan(layers={n: LayerBits(4, 16, group_size=128) for n in names}))
    calib = list(text_batches(run.splits.train, context=128, batch_size=16))[:2]
    q = quantize(run.model, plan, calib)
    path = export_onnx(q, calib[0][0][:2], tmp_path / "lm.onnx", plan=plan)
    test = list(text_batches(run.splits.test, context=128, batch_size=16))[:4]
    report = validate_onnx(path, q, test)
    assert report.n_positions == 4 * 16 * 128
    assert report.top1_agreement_fake >= 0.99, str(report)
    if key == "w4a16g128":  # weight-only: int4 codes behind a blocked DequantizeLinear, float activations
        tensors = onnx_proto.metadata(path)["mpsearch.tensors"]
        assert '"blocks.0.attn.q_proj.weight": {"bits": 4, "clipped": false, "granularity": "per_group", ' \
               '"storage": "int4"}' in tensors
        assert report.max_abs_diff_fake < 1e-3, str(report)


def test_small_cnn_mixed_loads_with_qdq_fusion(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """int4 around MaxPool: ONNX Runtime's QDQ propagation would make an int4 MaxPool; the runner
    drops that pass and the fused model still agrees with the simulation."""
    torch.manual_seed(0)
    model, splits = load_demo("small_cnn")
    plan = _mixed(quantizable_layer_names(model))
    q = quantize(model, plan, batches(splits.train, 256))
    path = export_onnx(q, splits.example_inputs(2), tmp_path / "m.onnx", plan=plan)
    report = validate_onnx(path, q, batches(splits.test, 512), qdq_fusion=True)
    assert report.qdq_fusion and report.top1_agreement_fake >= 0.98, str(report)
