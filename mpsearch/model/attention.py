"""PackedAttention: ``nn.MultiheadAttention``'s math with its weights in plain ``nn.Linear`` children.

``nn.MultiheadAttention`` keeps q, k and v in one packed ``in_proj_weight`` Parameter and reads
``out_proj.weight`` directly, so neither runs as a module and neither can be swapped for a
quantized layer. :class:`PackedAttention` computes the same function with

* ``in_proj``: ONE ``nn.Linear(E, 3E)`` holding the packed weight ``[3E, E]`` (rows q, k, v).
  q, k and v are one tensor in the user's model, so they get one bit-width; per-output-channel
  scales keep the ranges of the three projections apart. Discovered as ``<mha>.in_proj``;
* ``out_proj``: a plain ``nn.Linear(E, E)`` (torch's ``NonDynamicallyQuantizableLinear`` is
  replaced, with the same Parameters), discovered as ``<mha>.out_proj``;
* the attention itself through ``F.scaled_dot_product_attention`` (``need_weights=False``), or
  explicit matmuls and softmax when the caller asks for the attention weights.

Self-attention (query, key and value one tensor) runs ``in_proj`` once. Cross-attention runs it
on each distinct input and keeps the rows it needs, so its discovered MACs count the full
``3E`` outputs of every call: that is the work this module does.

Supported: batched (batch_first or not) and unbatched inputs, ``attn_mask`` (2-D or 3-D, bool
or float), ``key_padding_mask`` (bool or float), ``is_causal`` (with or without ``attn_mask``),
``need_weights`` with ``average_attn_weights``, dropout in training. Refused with
:class:`~mpsearch.errors.UnsupportedModelError`: ``kdim``/``vdim`` other than ``embed_dim``,
``add_bias_kv``, ``add_zero_attn``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import fx, nn

from mpsearch.errors import UnsupportedModelError


def _additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A bool mask (True = may not attend, torch MHA's convention) as 0 / -inf; float masks as given."""
    if mask is None or mask.is_floating_point():
        return None if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))


def _merged_mask(attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, is_causal: bool,
                 q: torch.Tensor, k: torch.Tensor, num_heads: int) -> torch.Tensor | None:
    """One additive mask broadcastable to the scores ``[..., H, L, S]``."""
    batched = q.dim() == 4
    n_q, n_k = q.shape[-2], k.shape[-2]
    if is_causal and attn_mask is None:  # torch demands the mask with the hint; we build it
        attn_mask = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).triu(1)
    mask = _additive(attn_mask, q.dtype)
    if mask is not None and mask.dim() == 3 and batched:  # [N * H, L, S] -> [N, H, L, S]
        mask = mask.unflatten(0, (-1, num_heads))
    pad = _additive(key_padding_mask, q.dtype)
    if pad is not None:
        pad = pad[:, None, None, :] if batched else pad  # [N, S] -> [N, 1, 1, S]; [S] broadcasts
        mask = pad if mask is None else mask + pad
    return mask


def _heads(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[..., L, E]`` -> ``[..., H, L, E / H]``."""
    return t.unflatten(-1, (num_heads, -1)).transpose(-3, -2)


def _to_batch_first(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    batch_first: bool) -> tuple[torch.Tensor, ...]:
    if q.dim() == 3 and not batch_first:  # [L, N, E] -> [N, L, E]
        return q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    return q, k, v


def _from_heads(out: torch.Tensor, batch_first: bool) -> torch.Tensor:
    """``[..., H, L, d]`` -> ``[..., L, E]``, back to ``[L, N, E]`` when not batch_first."""
    out = out.transpose(-3, -2).flatten(-2)
    return out.transpose(0, 1) if out.dim() == 3 and not batch_first else out


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, batch_first: bool,
                   attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, is_causal: bool,
                   dropout_p: float) -> torch.Tensor:
    """Multi-head attention of projected q, k, v through ``F.scaled_dot_product_attention``.

    Shapes are torch MHA's: ``[N, L, E]`` (batch_first), ``[L, N, E]`` or unbatched ``[L, E]``.
    A causal hint without a padding mask goes to SDPA as ``is_causal`` (torch MHA does the same).
    """
    q, k, v = _to_batch_first(q, k, v, batch_first)
    qh, kh, vh = _heads(q, num_heads), _heads(k, num_heads), _heads(v, num_heads)
    if is_causal and key_padding_mask is None:
        out = F.scaled_dot_product_attention(qh, kh, vh, dropout_p=dropout_p, is_causal=True)
    else:
        mask = _merged_mask(attn_mask, key_padding_mask, is_causal, qh, kh, num_heads)
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, dropout_p=dropout_p)
    return _from_heads(out, batch_first)


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, batch_first: bool,
                       attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, is_causal: bool,
                       dropout_p: float, average_attn_weights: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """As :func:`sdpa_attention`, with the attention weights (torch MHA's ``need_weights=True``).

    Returns:
        ``(output, weights)``; weights ``[N, L, S]`` averaged over heads, else ``[N, H, L, S]``
        (no ``N`` for unbatched inputs), after dropout as in torch.
    """
    q, k, v = _to_batch_first(q, k, v, batch_first)
    qh, kh, vh = _heads(q, num_heads), _heads(k, num_heads), _heads(v, num_heads)
    scores = torch.matmul(qh * (1.0 / math.sqrt(qh.shape[-1])), kh.transpose(-2, -1))  # [..., H, L, S]
    mask = _merged_mask(attn_mask, key_padding_mask, is_causal, qh, kh, num_heads)
    weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = _from_heads(torch.matmul(weights, vh), batch_first)
    return out, (weights.mean(dim=-3) if average_attn_weights else weights)


# torch.fx records these as single call_function nodes instead of tracing their shape-dependent
# branches (which symbolic tracing cannot follow), so a model using PackedAttention still traces
# and its in_proj / out_proj stay call_module nodes.
fx.wrap("sdpa_attention")
fx.wrap("explicit_attention")


class PackedAttention(nn.Module):
    """``nn.MultiheadAttention`` with its packed q/k/v projection as one ``nn.Linear`` (``in_proj``).

    Same forward signature and results as the module it replaces; build it with
    :meth:`from_multihead`. See the module docstring for what is supported.
    """

    # False keeps torch's fused encoder-layer fast path (nn.TransformerEncoderLayer reads
    # self_attn.in_proj_weight directly) from running: it would bypass in_proj, and so any
    # quantizer put in its place. Here q, k, v never live in a separate in_proj_weight.
    _qkv_same_embed_dim = False

    def __init__(self, embed_dim: int, num_heads: int, in_proj: nn.Linear, out_proj: nn.Linear,
                 dropout: float = 0.0, batch_first: bool = False) -> None:
        super().__init__()
        self.embed_dim, self.kdim, self.vdim = embed_dim, embed_dim, embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.in_proj = in_proj  # weight [3E, E]: rows q, k, v
        self.out_proj = out_proj  # weight [E, E]

    @property
    def in_proj_weight(self) -> torch.Tensor:
        """The packed ``[3E, E]`` weight (read-only alias of ``in_proj.weight``, as on torch MHA)."""
        return self.in_proj.weight

    @property
    def in_proj_bias(self) -> torch.Tensor | None:
        return self.in_proj.bias

    @classmethod
    def from_multihead(cls, mha: nn.MultiheadAttention, name: str) -> "PackedAttention":
        """The same attention with ``mha``'s own Parameters (ties to them are kept).

        Raises:
            UnsupportedModelError: ``mha`` has kdim/vdim other than embed_dim, add_bias_kv or
                add_zero_attn; the message names the module ``name``.
        """
        where = f"canonicalize: {name or '<model>'} (MultiheadAttention)"
        e = int(mha.embed_dim)
        if not mha._qkv_same_embed_dim:
            raise UnsupportedModelError(f"{where}: kdim and vdim must equal embed_dim {e} (one packed q/k/v "
                                        f"projection), but got kdim={mha.kdim}, vdim={mha.vdim}")
        if mha.bias_k is not None:
            raise UnsupportedModelError(f"{where}: add_bias_kv must be False, but got True")
        if mha.add_zero_attn:
            raise UnsupportedModelError(f"{where}: add_zero_attn must be False, but got True")
        in_proj = linear_with(mha.in_proj_weight, mha.in_proj_bias)
        out_proj = linear_with(mha.out_proj.weight, mha.out_proj.bias)
        module = cls(e, int(mha.num_heads), in_proj, out_proj, float(mha.dropout), bool(mha.batch_first))
        return module.train(mha.training)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """torch MHA's forward: returns ``(output, weights or None)``."""
        e = self.embed_dim
        if key is query and value is query:  # self-attention: one projection of one tensor
            qkv = self.in_proj(query)
            q, k, v = qkv[..., :e], qkv[..., e:2 * e], qkv[..., 2 * e:]
        else:  # cross-attention: project each distinct input, keep the rows it needs
            q = self.in_proj(query)[..., :e]
            kv = self.in_proj(key)
            k = kv[..., e:2 * e]
            v = kv[..., 2 * e:] if value is key else self.in_proj(value)[..., 2 * e:]
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            res = explicit_attention(q, k, v, self.num_heads, self.batch_first, attn_mask, key_padding_mask,
                                     is_causal, dropout_p, average_attn_weights)
            return self.out_proj(res[0]), res[1]
        out = sdpa_attention(q, k, v, self.num_heads, self.batch_first, attn_mask, key_padding_mask,
                             is_causal, dropout_p)
        return self.out_proj(out), None

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"


def linear_with(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` whose Parameters ARE ``weight`` and ``bias`` (no copy, ties kept)."""
    out_features, in_features = weight.shape
    lin = nn.Linear(in_features, out_features, bias=bias is not None, device="meta")
    lin.weight = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight)
    if bias is not None:
        lin.bias = bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias)
    return lin
