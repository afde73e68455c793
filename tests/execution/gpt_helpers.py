"""Tiny GPT-style models for the executor tests (SDPA and nn.MultiheadAttention variants).

Embedding with a tied head, a learned positional Parameter, LayerNorm, q/k/v Linear + SDPA or
nn.MultiheadAttention (causal mask buffer), GELU MLP. Random weights (seeded), no training.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d: int, h: int, mha: bool, t: int) -> None:
        super().__init__()
        self.mha = mha
        self.ln1 = nn.LayerNorm(d)
        self.ln2 = nn.LayerNorm(d)
        self.h = h
        if mha:
            self.attn = nn.MultiheadAttention(d, h, batch_first=True)
            self.register_buffer("mask", torch.triu(torch.ones(t, t, dtype=torch.bool), 1))
        else:
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.up = nn.Linear(d, 4 * d)
        self.down = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln1(x)
        b, t, d = y.shape
        if self.mha:
            a, _ = self.attn(y, y, y, attn_mask=self.mask, need_weights=False)
        else:
            q, k, v = [f(y).view(b, t, self.h, d // self.h).transpose(1, 2) for f in (self.q, self.k, self.v)]
            a = self.o(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))
        x = x + a
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 64, d: int = 32, h: int = 4, n_layers: int = 2, t: int = 16,
                 mha: bool = False) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(t, d) * 0.02)
        self.blocks = nn.ModuleList([Block(d, h, mha, t) for _ in range(n_layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx) + self.pos[:idx.shape[1]]
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x))


def lm_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))


def pattern_batches(n_batches: int, batch: int, g: torch.Generator) -> list[Any]:
    """(tokens, next tokens) [batch, 16] pairs of a learnable sequence: ``t[i+1] = (3 t[i] + 1) % 64``
    with one token in eight replaced at random."""
    out = []
    for _ in range(n_batches):
        seq = torch.empty(batch, 17, dtype=torch.long)
        seq[:, 0] = torch.randint(0, 64, (batch,), generator=g)
        for i in range(16):
            seq[:, i + 1] = (3 * seq[:, i] + 1) % 64
        noise = torch.rand(batch, 17, generator=g) < 0.125
        seq[noise] = torch.randint(0, 64, (int(noise.sum()),), generator=g)
        out.append((seq[:, :-1].contiguous(), seq[:, 1:].contiguous()))
    return out


def tiny_gpt(mha: bool, seed: int = 0, n_batches: int = 2, batch: int = 8, train_steps: int = 0
             ) -> tuple[nn.Module, list[Any]]:
    """A seeded TinyGPT (trained for ``train_steps`` Adam steps on :func:`pattern_batches`) and
    ``n_batches`` held-out (tokens, next tokens) [batch, 16] pairs of the same pattern."""
    torch.manual_seed(seed)
    model = TinyGPT(mha=mha)
    g = torch.Generator().manual_seed(seed + 1)
    if train_steps:
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for x, y in pattern_batches(train_steps, 32, g):
            opt.zero_grad()
            lm_loss(model(x), y).backward()
            opt.step()
    return model.eval(), pattern_batches(n_batches, batch, g)
