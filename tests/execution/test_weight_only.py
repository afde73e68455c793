"""Weight-only linear layers (a_bits 16): torch's int4 / int8 weight kernels (bfloat16, their fast CPU
path) against the simulation's dequantized weights, and a mixed weight-only plan on the tiny GPT."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from gpt_helpers import tiny_gpt

import mpsearch as mps
from mpsearch.core import BitPlan, LayerBits
from mpsearch.errors import MpsearchError
from mpsearch.execution import IntegerConfig, ir, to_integer
from mpsearch.execution.kernels import KERNELS
from mpsearch.execution.kernels import weight_only as wo
from mpsearch.quant import quantizable_layer_names

CPU = torch.device("cpu")


def _op(bits: int, group: int | None, zero_points: bool, n: int = 32, k: int = 128) -> ir.WeightOnlyLinear:
    g = torch.Generator().manual_seed(bits * 10 + (group or 0))
    lo, hi = (0, 2**bits - 1) if zero_points else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    codes = torch.randint(lo, hi + 1, (n, k), generator=g).to(torch.int8)
    groups = k // group if group else 1
    scale = torch.rand(n, groups, generator=g) * 0.05 + 0.01
    zp = torch.randint(lo, hi + 1, (n, groups), generator=g).int() if zero_points else torch.zeros(n, groups).int()
    return ir.WeightOnlyLinear(name="y", inputs=("x",), codes=codes, scale=scale, zp=zp, bias=torch.randn(n, generator=g),
                               group_size=group, w_bits=bits)


def _reference(op: ir.WeightOnlyLinear, x: torch.Tensor) -> torch.Tensor:
    n, k = op.codes.shape
    w = ((op.codes.double().reshape(n, op.scale.shape[1], -1) - op.zp.double()[..., None])
         * op.scale.double()[..., None]).reshape(n, k)
    return F.linear(x.double(), w, op.bias.double())


@pytest.mark.parametrize("bits,group,zero_points,path", [
    (4, 128, False, "int4"), (4, 32, True, "int4"), (8, None, False, "int8"), (3, 64, False, "unpacked"),
    (8, 64, True, "unpacked")])
def test_weight_only_kernels_match_the_dequantized_weight(bits: int, group: int | None, zero_points: bool,
                                                          path: str) -> None:
    op = _op(bits, group, zero_points)
    picked = "int4" if wo._int4(op, CPU) else "int8" if wo._int8(op, CPU) else "unpacked"
    assert picked == path  # what prepare_wo_linear runs
    x = torch.randn(2, 5, 128, generator=torch.Generator().manual_seed(1))
    y = KERNELS["wo_linear"](op, CPU, "int32")(x)
    assert y.shape == (2, 5, 32) and y.dtype == torch.float32
    ref = _reference(op, x)
    # packed kernels: bfloat16 activations and scales (their fast CPU path); unpacked: float32
    tol = 1e-2 * ref.abs().max().item() if path != "unpacked" else 1e-4
    assert (y.double() - ref).abs().max().item() < tol
    if path == "int4":  # 24 output features: the int4 pack needs a multiple of 16, the unpacked form runs
        odd = _op(bits, group, zero_points, n=24)
        assert wo._int4(odd, CPU) is None
        ref = _reference(odd, x)
        assert (KERNELS["wo_linear"](odd, CPU, "int32")(x).double() - ref).abs().max().item() < 1e-2 * ref.abs().max()


def test_mixed_weight_only_plan_on_the_tiny_gpt() -> None:
    model, batches = tiny_gpt(False, train_steps=100)
    plan = BitPlan(layers={n: (LayerBits(4, 16, group_size=64) if n.endswith("down") else
                               LayerBits(8, 16) if n.endswith("up") else LayerBits(8, 8))
                           for n in quantizable_layer_names(model)}, solver="test")
    profile = mps.load_profile("nvidia-a100")
    q = mps.quantize(model, plan, batches, profile=profile)
    with pytest.raises(MpsearchError, match=r"op module blocks.0.up \(QuantLinear\) at node 'blocks_0_up' is not "
                                            r"supported by the integer executor in integer-only mode .*: a weight-only "
                                            r"layer \(a_bits 16\) reads float activations"):
        to_integer(q, batches[0][0], IntegerConfig(integer_only=True))
    imodel = to_integer(q, batches[0][0], profile=profile)
    wo_ops = [f for f in imodel.float_ops if "weight_only_linear" in f]
    assert wo_ops == ["blocks_0_up (blocks.0.up): weight_only_linear w8a16",
                      "blocks_0_down (blocks.0.down): weight_only_linear w4a16g64",
                      "blocks_1_up (blocks.1.up): weight_only_linear w8a16",
                      "blocks_1_down (blocks.1.down): weight_only_linear w4a16g64"]
    report = mps.validate(imodel, q, batches, timing_repeats=0)
    assert report.top1_agreement >= 0.99  # measured: 99.2% (254 of 256 positions; bfloat16 kernels)
    assert abs(report.bits_per_token_int - report.bits_per_token_fake) < 0.01  # bfloat16 kernels


def test_a_layer_kept_in_16_bit_runs_as_a_float_linear_of_the_simulated_weight() -> None:
    """w16a16 ("keep in 16-bit") runs F.linear on the simulation's 16-bit-grid weight: a float op,
    listed, equal to the simulation's layer output to float32 rounding."""
    model, batches = tiny_gpt(False, train_steps=0)
    keep = ("emb", "head", "blocks.0.up", "blocks.1.up")  # the tied embedding/head too: 16-bit codes
    plan = BitPlan(layers={n: (LayerBits(16, 16) if n in keep else LayerBits(8, 8))
                           for n in quantizable_layer_names(model)}, solver="test")
    profile = mps.load_profile("nvidia-a100")
    q = mps.quantize(model, plan, batches, profile=profile)
    imodel = to_integer(q, batches[0][0], profile=profile)
    assert [f for f in imodel.float_ops if f.endswith(": linear") or f.endswith(": embedding")] == [
        "emb (module emb (QuantEmbedding)): embedding",
        "blocks_0_up (module blocks.0.up (QuantLinear)): linear", "blocks_1_up (module blocks.1.up (QuantLinear)): linear",
        "head (module head (QuantLinear)): linear"]
    report = mps.validate(imodel, q, batches, timing_repeats=0)
    assert report.top1_agreement >= 0.99 and abs(report.bits_per_token_int - report.bits_per_token_fake) < 1e-3
