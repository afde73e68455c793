"""A tiny GPT-style model for tests of transformer support (SDPA or nn.MultiheadAttention variants).

Embedding with a tied head, a learned positional Parameter, LayerNorm, q/k/v Linear + SDPA (or
nn.MultiheadAttention with a causal mask buffer), GELU MLP; random weights from torch's RNG.
Shared by the executor, sensitivity and format tests so that they exercise one model.
"""

from __future__ import annotations

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


__all__ = ["Block", "TinyGPT"]
