"""w8a8t (dynamic per-token activations): the int8 x int8 -> int32 kernel against an int64 reference
and the simulation's layer, and a mixed w8a8 / w8a8t plan on the tiny GPT (a listed float op,
refused in integer-only mode by layer name)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from gpt_helpers import tiny_gpt

import mpsearch as mps
from mpsearch.core import BitPlan, LayerBits
from mpsearch.errors import MpsearchError
from mpsearch.execution import IntegerConfig, IntegerModel, to_integer
from mpsearch.execution.kernels.islands import FLOAT_FNS
from mpsearch.execution.kernels.per_token import per_token_accumulator
from mpsearch.quant import quantizable_layer_names
from mpsearch.quant.quantizer import fake_quantize_minmax, minmax, qparams, quantize
from mpsearch.quant.spec import QuantSpec

SPECS = {"symmetric": QuantSpec(8, symmetric=True, signed=True, granularity="per_token"),
         "asymmetric_unsigned": QuantSpec(8, symmetric=False, signed=False, granularity="per_token"),
         "restricted": QuantSpec(8, symmetric=True, signed=True, restricted_range=True, granularity="per_token")}


def _layer(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 7, 48, generator=g) * torch.rand(3, 7, 1, generator=g) * 4 + 0.5  # rows of different ranges
    codes = torch.randint(-127, 128, (20, 48), generator=g).to(torch.int8)
    w_scale = torch.rand(20, generator=g) * 0.02 + 0.005
    bias = torch.randn(20, generator=g)
    return x, codes, w_scale, bias


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_per_token_kernel_is_exact_against_an_int64_reference(kind: str) -> None:
    spec = SPECS[kind]
    x, codes, w_scale, bias = _layer(len(kind))
    acc, s_row = per_token_accumulator(x, codes, spec)
    # the simulation's per-token codes (quant.quantizer), then an int64 product
    scale, zp = qparams(*minmax(x, spec), spec)
    q = quantize(x, scale, zp, spec).reshape(-1, 48).long()
    ref = (q - zp.reshape(-1, 1).long()) @ codes.long().t()
    assert acc.dtype == torch.int32 and torch.equal(acc.long(), ref)
    assert torch.equal(s_row, scale.reshape(-1))
    if kind == "asymmetric_unsigned":
        assert int(zp.max()) > 128 and int(zp.min()) == 0  # both signs of zp - 128 (the -128 shift, the correction)
    # the float island equals the simulation's layer (fake-quant rows, fake-quant weight) to float32 rounding
    y = FLOAT_FNS["per_token_linear"](x, codes, w_scale, bias, spec.bits, spec.symmetric, spec.signed,
                                      spec.restricted_range)
    sim = F.linear(fake_quantize_minmax(x, spec), codes.float() * w_scale[:, None], bias)
    assert y.shape == (3, 7, 20)
    assert (y - sim).abs().max().item() < 1e-5 * sim.abs().max().item()


def _plan(model: torch.nn.Module) -> BitPlan:
    # q / k / v and up read a per-token quantizer (LayerBits and the key "w8a8t"), the rest are w8a8
    return BitPlan(layers={n: (LayerBits(8, 8, a_mode="dynamic_per_token") if n.endswith((".q", ".k", ".v")) else
                               LayerBits.parse("w8a8t") if n.endswith("up") else LayerBits(8, 8))
                           for n in quantizable_layer_names(model)}, solver="test")


def test_mixed_w8a8t_plan_on_the_tiny_gpt(tmp_path) -> None:
    model, batches = tiny_gpt(False, train_steps=100)
    profile = mps.load_profile("nvidia-a100")
    q = mps.quantize(model, _plan(model), batches, profile=profile)
    with pytest.raises(MpsearchError, match=r"act_quant.blocks_0_ln1 \(ActQuant\) .* integer-only mode .*: layer\(s\) "
                                            r"blocks.0.q, blocks.0.k, blocks.0.v read a dynamic per-token activation "
                                            r"quantizer: .* needs a float max per row at run time"):
        to_integer(q, batches[0][0], IntegerConfig(integer_only=True))
    imodel = to_integer(q, batches[0][0], IntegerConfig(integer_only=False))
    assert [f for f in imodel.float_ops if "per_token_linear" in f] == [
        f"blocks_{b}_{n} (module blocks.{b}.{n} (QuantLinear)): per_token_linear"
        for b in (0, 1) for n in ("q", "k", "v", "up")]
    report = mps.validate(imodel, q, batches, timing_repeats=0)
    # measured: 100% top-1 agreement (256 of 256 positions), bits per token 2.344851 vs 2.344858
    assert report.top1_agreement >= 0.99
    assert abs(report.bits_per_token_int - report.bits_per_token_fake) < 0.01
    x = batches[0][0]  # graph.json / weights.npz keep the island's codes, scales and spec
    assert torch.equal(IntegerModel.load(imodel.save(tmp_path))(x), imodel(x))
