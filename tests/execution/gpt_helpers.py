"""Tiny GPT-style models for the executor tests (SDPA and nn.MultiheadAttention variants).

Embedding with a tied head, a learned positional Parameter, LayerNorm, q/k/v Linear + SDPA or
nn.MultiheadAttention (causal mask buffer), GELU MLP. Random weights (seeded), no training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mpsearch.demo.lm import lm_loss  # noqa: F401  # the tests import it from here
from mpsearch.testing.tiny_gpt import TinyGPT


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
