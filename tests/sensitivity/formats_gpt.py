"""The tiny GPT of the transformer end-to-end trials (/tmp/e2e/tiny.py): explicit q/k/v/o with SDPA or
nn.MultiheadAttention, LayerNorm, GELU MLP, an embedding tied to the head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d: int, h: int, mha: bool, T: int = 16) -> None:
        super().__init__()
        self.mha, self.h = mha, h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        if mha:
            self.attn = nn.MultiheadAttention(d, h, batch_first=True)
            self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), 1))
        else:
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln1(x)
        B, T, D = y.shape
        if self.mha:
            a, _ = self.attn(y, y, y, attn_mask=self.mask, need_weights=False)
        else:
            q, k, v = [t(y).view(B, T, self.h, D // self.h).transpose(1, 2) for t in (self.q, self.k, self.v)]
            a = self.o(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, D))
        x = x + a
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, V: int = 64, d: int = 32, h: int = 4, L: int = 2, T: int = 16, mha: bool = False) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.pos = nn.Parameter(torch.randn(T, d) * 0.02)
        self.blocks = nn.ModuleList([Block(d, h, mha, T) for _ in range(L)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, V, bias=False)
        self.head.weight = self.emb.weight  # tied

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx) + self.pos[: idx.shape[1]]
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x))


def lm_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))
