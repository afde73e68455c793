"""Embeddings quantize per row; a tied embedding and head get the same integer table."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mpsearch import quantize
from mpsearch.core.plan import LayerBits
from mpsearch.errors import ConfigError
from mpsearch.quant.modules import ActQuant, QuantEmbedding, QuantLinear


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.mid = nn.Linear(6, 6)
        self.head = nn.Linear(6, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.mid(self.emb(idx))))


def test_embedding_rows_are_fake_quantized_per_row_and_tied_head_matches():
    torch.manual_seed(0)
    model = _Tied()
    idx = torch.randint(0, 10, (4, 7))
    plan = {"emb": LayerBits(4, 8), "mid": LayerBits(8, 8), "head": LayerBits(4, 8)}
    q = quantize(model, plan, [idx])
    emb, head = q.get_submodule("emb"), q.get_submodule("head")
    assert isinstance(emb, QuantEmbedding) and isinstance(head, QuantLinear)
    # symmetric signed 4-bit per row: S = (beta - alpha) / (2^b - 1) = 2 max|w_row| / 15, codes in [-8, 7]
    w = model.emb.weight.detach()
    scale = 2 * w.abs().amax(1, keepdim=True) / 15
    want = torch.clamp(torch.round(w / scale), -8, 7) * scale
    torch.testing.assert_close(emb.quantized_weight(), want, rtol=0, atol=1e-6)
    torch.testing.assert_close(q.get_submodule("emb")(idx), F.embedding(idx, want), rtol=0, atol=1e-6)
    # the tied head reads the same table with the same per-row (= per-output-channel) scales
    assert torch.equal(emb.quantized_weight(), head.quantized_weight())
    # integer indices get no activation quantizer; the head's and mid's inputs do
    act = [m for m in q.modules() if isinstance(m, ActQuant)]
    assert sorted(c for a in act for c in a.consumers) == ["head", "mid"]


def test_a_tied_pair_with_different_bits_is_refused_naming_both():
    model = _Tied()
    idx = torch.randint(0, 10, (4, 7))
    for plan, got in (({"emb": LayerBits(4, 8), "mid": LayerBits(8, 8), "head": LayerBits(8, 8)}, "emb=w4a8, head=w8a8"),
                      ({"emb": LayerBits(4, 8)}, "emb=w4a8, head=float (not in the plan)")):
        with pytest.raises(ConfigError) as info:
            quantize(model, plan, [idx])
        assert str(info.value) == ("quantize: plan: layers 'emb', 'head' share one weight tensor, so they must take "
                                   f"the same format, but got {got}")
    assert isinstance(model.emb, nn.Embedding) and not isinstance(model.emb, QuantEmbedding)  # nothing changed
