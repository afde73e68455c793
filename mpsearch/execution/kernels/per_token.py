"""Kernel of linear layers with dynamic per-token activations (``w8a8t``: one scale per row of the
``[.., T, D]`` input, from that row's own min and max at run time).

The row scales need a float max per row, so this is not integer-only by nature: it runs as the
declared float island ``per_token_linear`` (listed by :attr:`IntegerModel.float_ops`). Inside it the
arithmetic is the integer one:

1. per row, scale and zero point exactly as the simulation's dynamic ``per_token`` ActQuant
   (:func:`mpsearch.quant.quantizer.qparams` on the row's min / max), codes
   ``clamp(round(x / s) + zp, qmin, qmax)`` (float32 division, half to even); unsigned 8-bit codes
   are stored shifted by -128 into int8, their zero point with them;
2. int8 row codes x int8 weight codes -> int32 (``torch._int_mm`` on CPU, int32 matmul elsewhere);
3. ``acc - zp_row * sum_k w[n, k]`` (the asymmetric correction), times ``s_row * s_w[n]``, plus the
   float bias: the simulation's ``F.linear`` of the same dequantized values, up to float32 rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mpsearch.quant.quantizer import qparams
from mpsearch.quant.spec import QuantSpec


def row_codes(x: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row codes of ``x`` viewed as ``(M, K)``: ``(codes int32 (M, K), scale float32 (M,),
    zero point int32 (M,))``, the integers and parameters of the dynamic per-token ActQuant."""
    rows = x.reshape(-1, x.shape[-1]).float()
    lo, hi = torch.aminmax(rows, dim=1)
    scale, zp = qparams(lo.cpu(), hi.cpu(), spec)
    scale, zp = scale.to(rows.device), zp.to(rows.device)
    q = torch.clamp(torch.round(rows / scale[:, None]) + zp[:, None].float(), spec.qmin, spec.qmax)
    return q.to(torch.int32), scale, zp


def int8_matmul(a: Tensor, b_kn: Tensor) -> Tensor:
    """``a (M, K) @ b (K, N)`` of int8 tensors -> int32 (exact)."""
    if a.device.type == "cpu":
        return torch._int_mm(a.contiguous(), b_kn.contiguous())
    return a.to(torch.int32) @ b_kn.to(torch.int32)  # (cuda _int_mm needs M > 16, K and N multiples of 8)


def per_token_accumulator(x: Tensor, codes: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor]:
    """``sum_k (q[m, k] - zp[m]) * w[n, k]`` as int32 ``(M, N)`` and the row scales ``(M,)``, for
    the rows ``q`` of ``x`` under the per-token ``spec`` and the int8 weight codes ``(N, K)``."""
    q, s_row, zp = row_codes(x, spec)
    offset = 128 if spec.qmax > 127 else 0  # unsigned 8-bit codes shifted into int8
    acc = int8_matmul((q - offset).to(torch.int8), codes.t())
    zp_shifted = zp - offset
    if bool((zp_shifted != 0).any()):  # sum_k (q - zp) w = acc - zp * sum_k w (|.| < 2^31 for K < 2^16)
        acc = acc - zp_shifted[:, None] * codes.to(torch.int32).sum(1, dtype=torch.int32)[None, :]
    return acc, s_row


def per_token_linear(x: Tensor, codes: Tensor, w_scale: Tensor, bias: Tensor | None, bits: int, symmetric: bool,
                     signed: bool, restricted_range: bool) -> Tensor:
    """``y = dequant(Q_row(x)) @ dequant(W)^T + bias`` computed as an int8 x int8 -> int32 GEMM.

    Args:
        x: the float input ``[.., K]``.
        codes: int8 weight codes ``(N, K)`` (symmetric, per output channel).
        w_scale: float32 ``(N,)`` weight scales.
        bias: float32 ``(N,)`` or None.
        bits, symmetric, signed, restricted_range: the activation quantizer's spec (per token).

    Returns:
        float32 ``[.., N]``.
    """
    spec = QuantSpec(bits=int(bits), symmetric=bool(symmetric), signed=bool(signed),
                     restricted_range=bool(restricted_range), granularity="per_token")
    acc, s_row = per_token_accumulator(x, codes, spec)
    y = acc.float() * (s_row[:, None] * w_scale.float()[None, :])
    if bias is not None:
        y = y + bias.float()
    return y.reshape(*x.shape[:-1], codes.shape[0])
