"""Float islands: transformer ops with no integer version run in float between a dequant and the
next activation quantizer, are listed by the program, and are refused when integer-only is asked.
Data moves (transpose, permute, slicing, chunk, split) stay integer."""

from __future__ import annotations

import pytest
import torch
from gpt_helpers import tiny_gpt
from torch import nn

import mpsearch as mps
from mpsearch.core import BitPlan, LayerBits
from mpsearch.errors import MpsearchError
from mpsearch.execution import IntegerConfig, IntegerModel, to_integer
from mpsearch.quant import quantizable_layer_names

SDPA_FLOAT_OPS = (
    "emb (module emb (QuantEmbedding)): embedding_dequant",
    "add (function add): add",
    "blocks_0_ln1 (module blocks.0.ln1 (LayerNorm)): layer_norm",
    "scaled_dot_product_attention (function scaled_dot_product_attention): scaled_dot_product_attention",
    "add_1 (function add): add",
    "blocks_0_ln2 (module blocks.0.ln2 (LayerNorm)): layer_norm",
    "gelu (function gelu): gelu",
    "add_2 (function add): add",
    "blocks_1_ln1 (module blocks.1.ln1 (LayerNorm)): layer_norm",
    "scaled_dot_product_attention_1 (function scaled_dot_product_attention): scaled_dot_product_attention",
    "add_3 (function add): add",
    "blocks_1_ln2 (module blocks.1.ln2 (LayerNorm)): layer_norm",
    "gelu_1 (function gelu): gelu",
    "add_4 (function add): add",
    "ln (module ln (LayerNorm)): layer_norm",
)
MHA_FLOAT_OPS = tuple(s.replace("scaled_dot_product_attention (function scaled_dot_product_attention): "
                                "scaled_dot_product_attention", "sdpa_attention (function sdpa_attention): sdpa_attention")
                      .replace("scaled_dot_product_attention_1 (function scaled_dot_product_attention): "
                               "scaled_dot_product_attention", "sdpa_attention_1 (function sdpa_attention): sdpa_attention")
                      for s in SDPA_FLOAT_OPS)


def _w8a8(model: nn.Module, batches: list) -> nn.Module:
    plan = BitPlan(layers={n: LayerBits(8, 8) for n in quantizable_layer_names(model)}, solver="test")
    return mps.quantize(model, plan, batches, profile=mps.load_profile("nvidia-a100"))


@pytest.mark.parametrize("mha,expected", [(False, SDPA_FLOAT_OPS), (True, MHA_FLOAT_OPS)])
def test_tiny_gpt_runs_with_declared_float_islands(mha: bool, expected: tuple[str, ...]) -> None:
    model, batches = tiny_gpt(mha)
    q = _w8a8(model, batches)
    imodel = to_integer(q, batches[0][0], profile=mps.load_profile("nvidia-a100"))  # integer_only: false
    assert imodel.float_ops == expected
    assert not imodel.integer_only and "NOT integer-only: 15 float islands" in repr(imodel)
    with torch.no_grad():
        for x, _ in batches:
            fake, out = q(x), imodel(x)
            assert out.shape == fake.shape == (8, 16, 64)
            agree = (out.argmax(-1) == fake.argmax(-1)).float().mean().item()
            assert agree >= 0.99
            # the logits agree to a few output LSBs (float rounding in the islands moves a code by 1 at most)
            assert (out - fake).abs().max().item() < 0.25


class _TanhMlp(nn.Module):  # tanh: an op with no integer version (SiLU has one since i-SiLU)
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(8, 16)
        self.down = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.tanh(self.up(x)))


def test_integer_only_refuses_an_op_without_integer_version() -> None:
    torch.manual_seed(0)
    data = [torch.randn(4, 5, 8)]
    q = mps.quantize(_TanhMlp().eval(), BitPlan(layers={"up": LayerBits(8, 8), "down": LayerBits(8, 8)}, solver="t"),
                     data)
    for how in ({}, {"profile": mps.load_profile("x86-2core-int")}, {"config": IntegerConfig(integer_only=True)}):
        with pytest.raises(MpsearchError, match=r"to_integer: op function tanh at node 'tanh' is not supported by the "
                                                r"integer executor in integer-only mode "
                                                r"\(IntegerConfig\(integer_only=True\), the default\): it has no "
                                                r"integer version and it could only run as a declared float island"):
            to_integer(q, data[0], **how)
    imodel = to_integer(q, data[0], profile=mps.load_profile("nvidia-a100"))
    assert imodel.float_ops == ("tanh (function tanh): tanh",)
    assert IntegerConfig.for_profile(mps.load_profile("x86-2core-int")).integer_only
    assert not IntegerConfig.for_profile(mps.load_profile("nvidia-a100")).integer_only
    with pytest.raises(MpsearchError, match="IntegerConfig: integer_only must be True or False, but got 1"):
        IntegerConfig(integer_only=1)  # type: ignore[arg-type]


def test_island_program_saves_and_loads(tmp_path: object) -> None:
    model, batches = tiny_gpt(True)
    q = _w8a8(model, batches)
    imodel = to_integer(q, batches[0][0], IntegerConfig(integer_only=False))
    again = IntegerModel.load(imodel.save(tmp_path))  # type: ignore[arg-type]
    x = batches[1][0]
    assert again.float_ops == imodel.float_ops
    assert torch.equal(again.logits_int(x), imodel.logits_int(x))


class _Moves(nn.Module):
    """Linear -> chunk / transpose / permute / slicing / split -> integer adds -> Linear: no island."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 24)
        self.b = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)  # [B, T, 24], per-channel accumulator scales
        p, r, s = h.chunk(3, dim=-1)
        u, v = torch.split(s, [3, 5], dim=-1)
        y = p.transpose(1, 2).transpose(-1, -2) + r.permute(0, 1, 2)[:, :, :]
        return self.b(y + torch.cat([v, u], dim=-1))


def test_data_moves_stay_integer_and_exact() -> None:
    torch.manual_seed(0)
    model = _Moves().eval()
    batches = [torch.randn(4, 6, 8) for _ in range(2)]
    plan = BitPlan(layers={"a": LayerBits(8, 8), "b": LayerBits(8, 8)}, solver="test")
    q = mps.quantize(model, plan, batches, profile=mps.load_profile("x86-2core-int"))
    imodel = to_integer(q, batches[0], IntegerConfig(integer_only=True))
    assert imodel.integer_only and imodel.float_ops == ()
    kinds = [op.KIND for op in imodel.ops]
    assert kinds.count("shape_op") == 9  # 3 chunk pieces, 2 split pieces, 2 transposes, permute, slice
    report = mps.validate(imodel, q, batches, timing_repeats=0)
    assert [(x.name, x.mismatch_fraction) for x in report.layers] == [("act_quant.add_1", 0.0), ("act_quant.x", 0.0)]
