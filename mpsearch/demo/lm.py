"""A small GPT-style byte-level language model, its loss, and bits per byte.

:class:`GPT` maps int64 byte ids ``(B, T)`` to logits ``(B, T, vocab)``: token embedding plus a
learned positional embedding, ``n_layers`` pre-LayerNorm blocks (causal self-attention, then an
MLP, each added to the residual stream), a final LayerNorm and an output head whose weight IS the
token embedding's weight (tied: one Parameter object). Attention has separate ``q_proj``,
``k_proj``, ``v_proj`` and ``out_proj`` linears around ``F.scaled_dot_product_attention(...,
is_causal=True)``. The MLP is GELU (``fc_in``, ``act``, ``fc_out``) or SwiGLU (``gate_proj``,
``up_proj``, ``down_proj`` with SiLU). The model is traceable by ``torch.fx`` and every
activation is its own module instance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from mpsearch.errors import rule_error

MLP_KINDS = ("gelu", "swiglu")


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a :class:`GPT`.

    Attributes:
        vocab_size: number of token ids (256 for bytes).
        context: longest sequence, in tokens (rows of the positional embedding).
        d_model: width of the residual stream.
        n_layers: number of blocks.
        n_heads: attention heads; must divide ``d_model``.
        mlp: "gelu" (fc_in -> GELU -> fc_out) or "swiglu" (down(silu(gate(x)) * up(x))).
        mlp_hidden: hidden width of the MLP.
        bias: whether the linears (not the tied head) have a bias.
    """

    vocab_size: int = 256
    context: int = 128
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp: str = "gelu"
    mlp_hidden: int = 512
    bias: bool = True

    def __post_init__(self) -> None:
        where = "GPTConfig"
        for key in ("vocab_size", "context", "d_model", "n_layers", "n_heads", "mlp_hidden"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise rule_error(where, key, "an integer >= 1", value)
        if self.d_model % self.n_heads:
            raise rule_error(where, "d_model", f"a multiple of n_heads = {self.n_heads}", self.d_model)
        if self.mlp not in MLP_KINDS:
            raise rule_error(where, "mlp", f"one of {list(MLP_KINDS)}", self.mlp)
        if not isinstance(self.bias, bool):
            raise rule_error(where, "bias", "a bool", self.bias)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with explicit q/k/v/out projections."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        d, bias = config.d_model, config.bias
        self.n_heads = config.n_heads
        self.q_proj = nn.Linear(d, d, bias=bias)
        self.k_proj = nn.Linear(d, d, bias=bias)
        self.v_proj = nn.Linear(d, d, bias=bias)
        self.out_proj = nn.Linear(d, d, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)  # (B, H, T, d_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, d_head)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class GeluMLP(nn.Module):
    """fc_in (d -> hidden), GELU, fc_out (hidden -> d)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc_in = nn.Linear(config.d_model, config.mlp_hidden, bias=config.bias)
        self.act = nn.GELU()
        self.fc_out = nn.Linear(config.mlp_hidden, config.d_model, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.act(self.fc_in(x)))


class SwiGLUMLP(nn.Module):
    """down_proj(silu(gate_proj(x)) * up_proj(x)), as in LLaMA."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.d_model, config.mlp_hidden, bias=config.bias)
        self.up_proj = nn.Linear(config.d_model, config.mlp_hidden, bias=config.bias)
        self.act = nn.SiLU()
        self.down_proj = nn.Linear(config.mlp_hidden, config.d_model, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = GeluMLP(config) if config.mlp == "gelu" else SwiGLUMLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only transformer over token ids ``(B, T)`` with ``T <= context``; returns logits ``(B, T, vocab)``.

    Weights start as in GPT-2: normal(0, 0.02), biases 0, LayerNorm 1 and 0, and the residual
    output projections (``out_proj``, ``fc_out`` / ``down_proj``) scaled by ``1 / sqrt(2 n_layers)``.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.context, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied: the very same Parameter
        self._init_weights()

    def _init_weights(self) -> None:
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)) and module is not self.head:
                last = name.rsplit(".", 1)[-1]
                std = residual_std if last in ("out_proj", "fc_out", "down_proj") else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in nats of logits ``(B, T, V)`` against targets ``(B, T)``."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def bits_per_byte(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean next-byte cross-entropy of ``model`` over ``(x, y)`` batches, in bits (nats / ln 2).

    Every target position counts once. Runs in eval mode without gradients, with the
    cross-entropy summed in float64; the model's train/eval mode is restored afterwards.
    A predictor that gives every byte the same logit scores exactly ``log2(256) = 8``.
    """
    was_training = model.training
    model.eval()
    total_bits, n_targets = 0.0, 0
    try:
        with torch.no_grad():
            for x, y in batches:
                logits = model(x).double()
                nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
                # Convert each position to bits before summing: a uniform predictor then sums
                # copies of exactly 8.0, which no rounding can disturb.
                total_bits += float((nats / math.log(2)).sum())
                n_targets += int(y.numel())
    finally:
        model.train(was_training)
    if n_targets == 0:
        raise rule_error("bits_per_byte", "batches", "non-empty", batches)
    return total_bits / n_targets
