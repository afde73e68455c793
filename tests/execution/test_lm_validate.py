"""The tiny GPT (SDPA and nn.MultiheadAttention variants) end to end: discover -> analyze(hessian)
-> cost_table -> allocate -> quantize -> to_integer -> validate, with the language-model figures
of validate (next-token top-1 agreement at every position, bits per token, perplexity)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from gpt_helpers import lm_loss, tiny_gpt
from test_float_islands import MHA_FLOAT_OPS, SDPA_FLOAT_OPS

import mpsearch as mps

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=[False, True], ids=["sdpa", "mha"])
def pipeline(request: Any) -> tuple[bool, Any, Any, Any, list[Any]]:
    mha = request.param
    model, batches = tiny_gpt(mha, train_steps=100)
    layers = mps.discover(model, batches[0][0][:2])
    sens = mps.analyze(model, lm_loss, batches, method="hessian")
    profile = mps.load_profile("nvidia-a100")  # integer_only: false -> float islands allowed
    table = mps.cost_table(model, layers, sens, profile, w_bits=[4, 8], a_bits=[8])
    plan = mps.allocate(table, budgets={"size_bytes": "100%"})
    q = mps.quantize(model, plan, batches, profile=profile)
    imodel = mps.to_integer(q, batches[0][0], profile=profile)
    return mha, plan, q, imodel, batches


def test_w8a8_next_token_agreement_and_bits_per_token(pipeline: Any) -> None:
    mha, plan, q, imodel, batches = pipeline
    assert {(b.w_bits, b.a_bits) for b in plan.layers.values()} == {(8, 8)}  # the full budget: W8A8
    report = mps.validate(imodel, q, batches, timing_repeats=0)
    assert report.n_images == 16 and report.n_positions == 256
    assert report.top1_agreement >= 0.99
    assert report.float_ops == (MHA_FLOAT_OPS if mha else SDPA_FLOAT_OPS)
    # bits per token of the simulation, recomputed here from its logits
    with torch.no_grad():
        nats = sum(float(lm_loss(q(x).double(), y)) * y.numel() for x, y in batches) / 256
    assert report.bits_per_token_fake == pytest.approx(nats / math.log(2), rel=1e-9)
    assert report.perplexity_fake == pytest.approx(math.exp(nats), rel=1e-9)
    assert report.bits_per_token_fake < 3.0  # trained: far below log2(64) = 6 bits of a uniform guess
    assert abs(report.bits_per_token_int - report.bits_per_token_fake) < 0.005
    assert abs(report.perplexity_diff) < 0.02
    assert report.accuracy_int == pytest.approx(report.accuracy_fake, abs=0.01)
    text = str(report)
    assert "16 sequences, 256 positions (next-token top-1)" in text
    assert "NOT integer-only: 15 ops ran in float (declared float islands):" in text
    assert "    ln (module ln (LayerNorm)): layer_norm" in text
    d = report.to_dict()
    assert d["float_ops"] == list(report.float_ops) and d["perplexity_diff"] == report.perplexity_diff


def test_classifier_reports_stay_per_image() -> None:
    """A [B, C] output keeps the per-image figures, no LM fields, and says it is integer-only."""
    from mpsearch.core import BitPlan
    from mpsearch.quant import quantizable_layer_names

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    data = [(torch.randn(10, 6), torch.randint(0, 3, (10,))) for _ in range(2)]
    q = mps.quantize(net, BitPlan.uniform(quantizable_layer_names(net), 8, 8), data)
    report = mps.validate(mps.to_integer(q, data[0][0]), q, data, timing_repeats=0)
    assert report.n_images == 20 and report.n_positions is None and report.bits_per_token_int is None
    assert report.perplexity_diff is None and report.float_ops == ()
    assert "integer-only: no op ran in float" in str(report)


@pytest.mark.parametrize("mha", [False, True], ids=["sdpa", "mha"])
def test_tiny_gpt_integer_only_end_to_end(mha: bool) -> None:
    """Integer-only: embedding, positions, LayerNorm, attention (QK^T, softmax, AV), GELU all integer."""
    from mpsearch.core import BitPlan, LayerBits
    from mpsearch.execution import DtypeAudit, IntegerConfig
    from mpsearch.quant import quantizable_layer_names

    model, batches = tiny_gpt(mha, train_steps=100)
    plan = BitPlan(layers={n: LayerBits(8, 8) for n in quantizable_layer_names(model)}, solver="test")
    profile = mps.load_profile("x86-2core-int")  # integer_only: true
    q = mps.quantize(model, plan, batches, profile=profile)
    imodel = mps.to_integer(q, batches[0][0], profile=profile)
    assert imodel.integer_only and imodel.float_ops == ()
    kinds = [op.KIND for op in imodel.ops]
    assert (kinds.count("act_matmul"), kinds.count("isoftmax"), kinds.count("igelu"), kinds.count("ilayernorm"),
            kinds.count("embedding")) == (4, 2, 2, 5, 1)
    with DtypeAudit() as audit:
        imodel.run(*imodel.quantize_input(batches[0][0]))
    assert audit.float_ops == []
    report = mps.validate(imodel, q, batches, timing_repeats=0)
    assert report.float_ops == () and report.top1_agreement >= 0.99  # measured: 100% (256 positions)
    assert abs(report.bits_per_token_int - report.bits_per_token_fake) < 0.02  # measured: 0.002 / 0.005
