"""``mpsearch profile --engine onnxruntime``: node times attributed to layers, a loadable measured profile."""

from __future__ import annotations

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mpsearch.cli import main  # noqa: E402
from mpsearch.hardware import load_profile  # noqa: E402
from mpsearch.profiler.onnxruntime_engine import _per_run_layer_ms  # noqa: E402


def test_node_times_go_to_their_layers_and_add_up_to_the_run() -> None:
    owners = {"conv1": "conv1", "act_quant.relu": "conv1", "fc": "fc", "flatten": "conv1"}
    ev = [{"name": "model_run", "ts": 0, "dur": 200},
          {"cat": "Node", "name": "conv1/Conv_kernel_time", "ts": 10, "dur": 60},
          {"cat": "Node", "name": "act_quant.relu/QuantizeLinear_kernel_time", "ts": 80, "dur": 20},
          {"cat": "Node", "name": "fc/MatMul_kernel_time", "ts": 120, "dur": 20},
          {"cat": "Node", "name": "unknown_kernel_time", "ts": 150, "dur": 5},
          {"name": "model_run", "ts": 1000, "dur": 50},
          {"cat": "Node", "name": "fc/MatMul_kernel_time", "ts": 1010, "dur": 25}]
    runs = _per_run_layer_ms(ev, owners)
    # run 1: conv1 80 us, fc 20 us of 100 attributed, scaled to the 200 us run
    assert runs[0] == pytest.approx({"conv1": 0.16, "fc": 0.04})
    assert runs[1] == pytest.approx({"fc": 0.05})


def test_cli_profile_engine_onnxruntime(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "ort.yaml"
    assert main(["profile", "--engine", "onnxruntime", "--model", "small_cnn", "--pairs", "w8a8,w4a8",
                 "--warmup", "2", "--repeats", "8", "-o", str(out)]) == 0
    profile = load_profile(out)
    assert profile.source["kind"] == "measured" and "ONNX Runtime" in profile.source["notes"]
    ops = sorted(e.op for e in profile.cost.lut)
    assert ops == ["conv2d", "conv2d", "conv2d", "linear"]  # small_cnn: 3 convs of distinct shapes, 1 linear
    for e in profile.cost.lut:
        assert set(e.latency_ms) == {"w8a8", "w4a8"}
        assert all(s.mean > 0 and s.count >= 1 for s in e.latency_ms.values())
