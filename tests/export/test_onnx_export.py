"""ONNX QDQ export: hand-computed QDQ values, exact int4 codes, refusals before writing, metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mpsearch.core import BitPlan, LayerBits  # noqa: E402
from mpsearch.errors import ConfigError, UnsupportedModelError  # noqa: E402
from mpsearch.execution.export import OnnxRunner, export_onnx, onnx_proto  # noqa: E402
from mpsearch.quant import quantize  # noqa: E402
from mpsearch.quant.quantizer import quantize as quantize_codes  # noqa: E402


def _tiny(w_bits: int = 8, a_bits: int = 8) -> tuple[nn.Module, BitPlan, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    plan = BitPlan(layers={"0": LayerBits(w_bits, a_bits)})
    x = torch.randn(16, 4)
    return quantize(model, plan, [x]), plan, x


def test_w8a8_linear_equals_hand_computed_qdq(tmp_path) -> None:  # type: ignore[no-untyped-def]
    q, plan, x = _tiny()
    path = export_onnx(q, x[:2], tmp_path / "lin.onnx", plan=plan)
    out = OnnxRunner(path, qdq_fusion=False)(x).double()
    # by hand: activation QDQ with the frozen (S, zp), weight codes per channel, int32 bias at S * S_w
    aq = q.act_quant[next(iter(q.act_quant.keys()))]
    s, zp = float(aq.scale), int(aq.zero_point)
    xq = torch.clamp(torch.round(x / aq.scale) + zp, -128, 127)
    xd = (xq - zp).double() * s
    lin = q.get_submodule("0")
    sw = lin.weight_quant.scale.double()
    # float32 division, as the simulation's quantizer: the channel maximum sits at code 127.5 exactly
    wq = torch.clamp(torch.round(lin.weight.detach() / lin.weight_quant.scale[:, None]), -128, 127).double()
    b_scale = (torch.tensor(s, dtype=torch.float32) * lin.weight_quant.scale).double()
    b = torch.round(lin.bias.detach().double() / b_scale) * b_scale
    expected = xd @ (wq * sw[:, None]).T + b
    assert torch.allclose(out, expected, rtol=0, atol=1e-5), (out - expected).abs().max()
    with torch.no_grad():  # and the simulation differs only by the bias rounding (< S * S_w / 2)
        assert (out - q(x).double()).abs().max() <= float(b_scale.max()) / 2 + 1e-5
    meta = onnx_proto.metadata(path)
    assert json.loads(meta["mpsearch.plan"])["layers"]["0"]["w_bits"] == 8
    assert meta["mpsearch.version"] and meta["mpsearch.low_bits_storage"] == "native"
    onnx = pytest.importorskip("onnx")
    onnx.checker.check_model(onnx_proto.load(path), full_check=True)


@pytest.mark.parametrize("w_bits", [4, 3, 2])
def test_low_bit_weights_round_trip_exactly_as_int4(tmp_path, w_bits: int) -> None:  # type: ignore[no-untyped-def]
    q, plan, x = _tiny(w_bits, 4)
    path = export_onnx(q, x[:2], tmp_path / "w.onnx", plan=plan)
    model = onnx_proto.load(path)
    lin = q.get_submodule("0")
    codes = quantize_codes(lin.weight.detach(), lin.weight_quant.scale, lin.weight_quant.zero_point,
                           lin.weight_quant.spec).numpy()
    (init,) = [t for t in model.graph.initializer if t.name.startswith("0.weight:")]
    assert init.data_type == 22  # TensorProto.INT4
    stored = onnx_proto.initializer_array(model, init.name)
    assert np.array_equal(stored.T.astype(np.int64), codes.astype(np.int64))  # stored as W^T for MatMul
    tensors = json.loads(onnx_proto.metadata(path)["mpsearch.tensors"])
    assert tensors["0.weight"] == {"bits": w_bits, "storage": "int4", "granularity": "per_channel",
                                   "clipped": False}
    (act,) = [v for k, v in tensors.items() if k.startswith("act_quant")]
    assert act["storage"] == "int4" and act["bits"] == 4
    with torch.no_grad():  # float bias below 8 bits: ONNX Runtime computes the simulation's values
        assert torch.allclose(OnnxRunner(path, qdq_fusion=False)(x), q(x), atol=1e-5)


def test_old_opset_refused_for_4_bit_before_writing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    q, plan, x = _tiny(4, 8)
    out = tmp_path / "old.onnx"
    with pytest.raises(UnsupportedModelError, match=r"opset must be >= 21 for int4 .* but got opset 17"):
        export_onnx(q, x[:2], out, opset=17)
    assert not out.exists()
    # int8 containers at the old opset: allowed, and the metadata says so
    export_onnx(q, x[:2], out, opset=17, low_bits="int8")
    meta = onnx_proto.metadata(out)
    assert meta["mpsearch.low_bits_storage"].startswith("codes of fewer than 8 bits held in int8")
    assert json.loads(meta["mpsearch.tensors"])["0.weight"]["storage"] == "int8"
    with torch.no_grad():
        assert torch.allclose(OnnxRunner(out, qdq_fusion=False)(x), q(x), atol=1e-5)


class _Sine(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.fc(x))


def test_op_without_onnx_form_is_named_before_writing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    q = quantize(_Sine().eval(), BitPlan(layers={"fc": LayerBits(8, 8)}), [torch.randn(8, 4)])
    out = tmp_path / "sine.onnx"
    with pytest.raises(UnsupportedModelError, match=r"op function torch.sin at node 'sin' has no ONNX QDQ form"):
        export_onnx(q, torch.randn(2, 4), out)
    assert not out.exists()


def test_bad_path_and_options(tmp_path) -> None:  # type: ignore[no-untyped-def]
    q, _, x = _tiny()
    with pytest.raises(ConfigError, match="path must be a file path"):
        export_onnx(q, x[:2], tmp_path)
    with pytest.raises(ConfigError, match="low_bits must be one of"):
        export_onnx(q, x[:2], tmp_path / "a.onnx", low_bits="int2")
    with pytest.raises(ConfigError, match="opset must be"):
        export_onnx(q, x[:2], tmp_path / "a.onnx", opset=11)
    assert list(tmp_path.iterdir()) == []


def test_per_token_activations_are_refused_by_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """w8a8t: a range taken from each token at run time has no static QDQ form."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    plan = BitPlan(layers={"0": LayerBits(8, 8, a_mode="dynamic_per_token")})
    x = torch.randn(2, 5, 4)
    q = quantize(model, plan, [x])
    out = tmp_path / "t.onnx"
    with pytest.raises(UnsupportedModelError, match=r"activation quantizer 'act_quant\.\w+' .*per_token.*ONNX cannot "
                                                    r"express a range taken from each batch or token"):
        export_onnx(q, x, out)
    assert not out.exists()
