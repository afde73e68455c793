"""Unsupported ops fail early and clearly; export round-trips bit-identically; the W8A8 program
matches PyTorch's int8 kernels; CUDA gives the CPU's integers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mpsearch.core import BitPlan
from mpsearch.demo import batches
from mpsearch.errors import UnsupportedModelError
from mpsearch.execution import IntegerModel, to_integer
from mpsearch.execution.reference import torch_ao_available, torch_int8_reference
from mpsearch.quant import QuantizeConfig, quantizable_layer_names, quantize


class _WithSigmoid(nn.Module):
    def __init__(self, middle: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.middle = middle
        self.conv2 = nn.Conv2d(4, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        y = torch.sigmoid(y) if self.middle is None else self.middle(y)
        return self.conv2(y)


@pytest.mark.parametrize("middle,named", [(None, "function sigmoid"), (nn.LayerNorm([6, 6]), "LayerNorm")])
def test_unsupported_op_named_before_computation(middle: nn.Module | None, named: str) -> None:
    model = _WithSigmoid(middle).eval()
    x = torch.randn(4, 1, 8, 8)
    q = quantize(model, BitPlan.uniform(["conv1", "conv2"], 8, 8), [x])

    def boom(*_: object) -> None:
        raise RuntimeError("computed")

    q.conv1.forward = boom  # any computation would raise this instead
    with pytest.raises(UnsupportedModelError, match=named) as info:
        to_integer(q, x)
    assert ("node 'middle'" in str(info.value)) or ("node 'sigmoid'" in str(info.value))
    assert "not supported by the integer executor" in str(info.value)


def test_unquantized_layer_and_dynamic_ranges_refused() -> None:
    model = _WithSigmoid(nn.ReLU()).eval()
    x = torch.randn(4, 1, 8, 8)
    q = quantize(model, BitPlan.uniform(["conv1"], 8, 8), [x])
    with pytest.raises(UnsupportedModelError, match="conv2.*not quantized"):
        to_integer(q, x)
    q = quantize(model, BitPlan.uniform(["conv1", "conv2"], 8, 8), None,
                 config=QuantizeConfig(activation_range="dynamic"))
    with pytest.raises(UnsupportedModelError, match="mode 'dynamic'"):
        to_integer(q, x)
    with pytest.raises(UnsupportedModelError, match="GraphModule"):
        to_integer(model, x)


@pytest.fixture(scope="module")
def resnet_w4a8(demo):  # type: ignore[no-untyped-def]
    model, splits = demo("resnet_tiny")
    names = quantizable_layer_names(model)
    q = quantize(model, BitPlan.uniform(names, 4, 8), batches(splits.train, 256))
    return q, splits


def test_save_load_bit_identical(resnet_w4a8, tmp_path) -> None:  # type: ignore[no-untyped-def]
    q, splits = resnet_w4a8
    imodel = to_integer(q, splits.example_inputs(2))
    imodel.save(tmp_path)
    graph = json.loads((tmp_path / "graph.json").read_text())
    assert graph["format"] == "mpsearch-integer-program" and len(graph["ops"]) == len(imodel.ops)
    convs = [op for op in graph["ops"] if op["op"] == "conv"]
    assert len(convs) == 8 and all(op["w_bits"] == 4 and op["a_bits"] == 8 for op in convs)
    assert {op["tensors"]["weight"]["dtype"] for op in convs} == {"int8"}
    requant = next(op for op in graph["ops"] if op["op"] == "requant")
    assert {"multiplier", "shift", "zp_out"} <= set(requant["tensors"])
    assert "values" in requant["tensors"]["multiplier"]  # small tensors readable inline
    loaded = IntegerModel.load(tmp_path)
    x = splits.test.tensors[0]
    assert torch.equal(loaded.logits_int(x), imodel.logits_int(x))
    assert loaded.output == imodel.output


def test_w8a8_matches_pytorch_int8_kernels(demo) -> None:  # type: ignore[no-untyped-def]
    engine = torch_ao_available()
    if engine is None:
        pytest.skip("torch.ao quantized engines are not available in this PyTorch build")
    model, splits = demo("small_cnn")
    q = quantize(model, BitPlan.uniform(quantizable_layer_names(model), 8, 8), batches(splits.train, 256))
    imodel = to_integer(q, splits.example_inputs(2))
    x = splits.test.tensors[0]
    with torch.no_grad():
        fake = q(x)
    lo, hi = float(fake.min()), float(fake.max())
    scale = (hi - lo) / 255  # an 8-bit grid for the logits of PyTorch's last layer
    zp = int(round(-lo / scale))
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        ref = torch_int8_reference(q, scale, zp)(x)
    finally:
        torch.backends.quantized.engine = previous
    ours = torch.round(imodel(x).double() / scale).long() + zp  # our logits on PyTorch's output grid
    diff = (ref.int_repr().long() - ours.clamp(0, 255)).abs()
    assert torch.equal(ref.dequantize().argmax(1), imodel.predict(x)), engine
    assert (diff <= 1).float().mean().item() >= 0.99, engine


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_cpu_integers(resnet_w4a8) -> None:  # type: ignore[no-untyped-def]
    q, splits = resnet_w4a8
    imodel = to_integer(q, splits.example_inputs(2))
    x = splits.test.tensors[0]
    cpu = imodel.logits_int(x)
    for gemm in ("int_mm", "auto"):
        gpu = imodel.to("cuda", gemm=gemm).logits_int(x.cuda())
        assert torch.equal(gpu.cpu(), cpu)
    imodel.to("cpu")
