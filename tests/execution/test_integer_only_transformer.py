"""Integer-only mode on transformer pieces: embedding lookup + learned positions, LayerNorm, GELU,
softmax, activation matmul and mul run their integer versions (no float island), and agree with
the fake-quant simulation within the stated errors of their kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mpsearch as mps
from mpsearch.core import BitPlan, LayerBits
from mpsearch.execution import IntegerConfig, to_integer

INTEGER_ONLY = IntegerConfig(integer_only=True)


class _Pieces(nn.Module):
    """Embedding + positions -> LayerNorm -> Linear -> GELU -> Linear -> (a @ b^T) softmax-weighted."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(32, 16)
        self.pos = nn.Parameter(torch.randn(8, 16) * 0.1)
        self.ln = nn.LayerNorm(16)
        self.up = nn.Linear(16, 32)
        self.down = nn.Linear(32, 16)
        self.qk = nn.Linear(16, 32)
        self.head = nn.Linear(16, 32)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx) + self.pos
        h = self.down(F.gelu(self.up(self.ln(x))))
        q, k = self.qk(h).chunk(2, dim=-1)
        att = torch.softmax(torch.matmul(q, k.transpose(1, 2)) * 0.25, dim=-1)
        return self.head(torch.matmul(att, h) * h)


@pytest.fixture(scope="module")
def pieces() -> tuple[nn.Module, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = _Pieces().eval()
    g = torch.Generator().manual_seed(1)
    data = [torch.randint(0, 32, (16, 8), generator=g) for _ in range(3)]
    names = ["emb", "up", "down", "qk", "head"]
    q = mps.quantize(model, BitPlan(layers={n: LayerBits(8, 8) for n in names}, solver="test"), data,
                     profile=mps.load_profile("x86-2core-int"))
    return q, data


def test_integer_only_program_has_no_float_op(pieces: tuple[nn.Module, list[torch.Tensor]]) -> None:
    q, data = pieces
    imodel = to_integer(q, data[0], INTEGER_ONLY)
    assert imodel.integer_only and imodel.float_ops == ()
    kinds = {op.KIND for op in imodel.ops}
    assert {"embedding", "const", "ilayernorm", "igelu", "isoftmax", "act_matmul", "act_mul"} <= kinds
    assert not kinds & {"float_op", "dequant", "quantize"}
    from mpsearch.execution import DtypeAudit

    codes = imodel.quantize_input(data[1])
    with DtypeAudit() as audit:
        imodel.run(*codes)
    assert audit.float_ops == []
    report = mps.validate(imodel, q, data, timing_repeats=0)
    assert report.float_ops == () and report.n_positions == 3 * 16 * 8
    assert report.top1_agreement >= 0.99  # measured: 100% of the 384 positions
    # the float-island program of the same model is the simulation's arithmetic: closer still
    islands = to_integer(q, data[0], IntegerConfig(integer_only=False))
    assert islands.float_ops == (
        "emb (module emb (QuantEmbedding)): embedding_dequant", "add (function add): add",
        "ln (module ln (LayerNorm)): layer_norm", "gelu (function gelu): gelu", "matmul (function matmul): matmul",
        "mul (function mul): mul", "softmax (function softmax): softmax", "matmul_1 (function matmul): matmul",
        "mul_1 (function mul): mul")
    assert mps.validate(islands, q, data, timing_repeats=0).top1_agreement >= report.top1_agreement


def test_integer_product_of_accumulators_calibrates_codes() -> None:
    class _Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x)
            return y * y  # int32 accumulators, no activation quantizer before the product

    torch.manual_seed(0)
    data = [torch.randn(4, 4)]
    q = mps.quantize(_Bad().eval(), BitPlan(layers={"a": LayerBits(8, 8)}, solver="test"), data)
    imodel = to_integer(q, data[0], INTEGER_ONLY)  # y rescaled to int8 codes of its example range
    assert [op.KIND for op in imodel.ops][-3:] == ["requant", "requant", "act_mul"]


def test_integer_only_program_saves_and_loads(pieces: tuple[nn.Module, list[torch.Tensor]], tmp_path: object) -> None:
    from mpsearch.execution import IntegerModel

    q, data = pieces
    imodel = to_integer(q, data[0], INTEGER_ONLY)
    again = IntegerModel.load(imodel.save(tmp_path))  # type: ignore[arg-type]
    assert [op.KIND for op in again.ops] == [op.KIND for op in imodel.ops]
    assert torch.equal(again.logits_int(data[2]), imodel.logits_int(data[2]))
