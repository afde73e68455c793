"""Hessian traces through attention: analyze runs under the math SDPA kernel (it has the double
backward that the fused CPU kernel lacks) and matches the exact per-layer Hessian."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mpsearch import analyze, discover
from mpsearch.sensitivity import HessianConfig


class _Attn(nn.Module):
    """One causal self-attention block on [B, T, 4] features, then a linear read-out."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.o = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (m(x).view(b, t, 2, 2).transpose(1, 2) for m in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, 4)
        return self.o(torch.tanh(a)).mean(1)


class _Mha(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = self.attn(x, x, x, need_weights=False)
        return self.head(torch.tanh(a)).mean(1)


def _exact_traces(model: nn.Module, names: list[str], x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """tr(d2 L / dW2) per layer, from the full Hessian of the weight (float64, math kernel)."""
    out = {}
    modules = dict(model.named_modules())
    for name in names:
        mod = modules[name]
        w0 = mod.weight.detach().clone()

        def loss_of(w: torch.Tensor, mod: nn.Module = mod) -> torch.Tensor:
            saved = mod.weight
            del mod.weight
            mod.weight = w  # a plain tensor for the functional Hessian
            try:
                return F.cross_entropy(model(x), y)
            finally:
                mod.weight = saved

        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            h = torch.autograd.functional.hessian(loss_of, w0)
        out[name] = float(h.reshape(w0.numel(), w0.numel()).trace())
    return out


def test_hessian_through_sdpa_matches_exact_within_5_percent():
    torch.manual_seed(0)
    model = _Attn().double()
    x, y = torch.randn(16, 5, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    names = [lay.name for lay in discover(model, x[:2])]
    assert names == ["q", "k", "v", "o"]
    # the fused CPU kernel has no double backward: this is what analyze avoids
    with pytest.raises(RuntimeError, match="not implemented"):
        loss = F.cross_entropy(model(x), y)
        (g,) = torch.autograd.grad(loss, model.q.weight, create_graph=True)
        torch.autograd.grad((g * g).sum(), model.q.weight)
    cfg = HessianConfig(min_probes=64, max_probes=4000, rel_stderr_target=0.01, probes_per_batch=64)
    sens = analyze(model, nn.CrossEntropyLoss(), [(x, y)], method="hessian", config=cfg)
    exact = _exact_traces(model, names, x, y)
    for n in names:
        assert abs(exact[n]) > 1e-6, n
        assert sens[n].trace == pytest.approx(exact[n], rel=0.05), (n, sens[n].trace, exact[n])


def test_multihead_attention_is_analysed_as_its_canonical_layers():
    """An nn.MultiheadAttention is measured as ``attn.in_proj`` ([3E, E]) and ``attn.out_proj``."""
    torch.manual_seed(1)
    model = _Mha().double()
    x, y = torch.randn(8, 5, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    cfg = HessianConfig(min_probes=32, max_probes=2000, rel_stderr_target=0.02, probes_per_batch=32)
    sens = analyze(model, nn.CrossEntropyLoss(), [(x, y)], method="hessian", config=cfg)
    assert list(sens) == ["attn.in_proj", "attn.out_proj", "head"]
    assert sens["attn.in_proj"].n_params == 3 * 4 * 4
    # the packed projection's trace is that of the MHA's in_proj_weight in the user's model
    w = model.attn.in_proj_weight

    def loss_of(p: torch.Tensor) -> torch.Tensor:
        attn = model.attn
        del attn.in_proj_weight
        attn.in_proj_weight = p
        try:
            return F.cross_entropy(model(x), y)
        finally:
            attn.in_proj_weight = w

    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        h = torch.autograd.functional.hessian(loss_of, w.detach().clone())
    exact = float(h.reshape(w.numel(), w.numel()).trace())
    assert sens["attn.in_proj"].trace == pytest.approx(exact, rel=0.06)
    assert isinstance(model.attn, nn.MultiheadAttention)  # the user's model is unchanged
