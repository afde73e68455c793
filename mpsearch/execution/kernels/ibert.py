"""Integer-only GELU, softmax, SiLU and LayerNorm in the style of I-BERT (Kim et al. 2021, "I-BERT:
Integer-only BERT Quantization"), and the build-time constants each needs.

Every kernel reads integers ``q`` standing for ``S * q`` and computes in int64 only:

* **i-GELU**: ``GELU(x) = x/2 (1 + erf(x / sqrt 2))`` with ``erf(u) ~ sign(u) (a (min(|u|, -b) + b)^2 + 1)``,
  ``a = -0.2888``, ``b = -1.769``. With ``S' = S / sqrt 2`` and ``S_L = |a| S'^2``:
  ``q_b = floor(b / S')``, ``q_c = floor(1 / S_L)``, ``L = q_c - (min(|q|, clip) + q_b)^2`` (erf at scale
  ``S_L``) and ``y = q (sign(q) L + q_c)`` at scale ``S S_L / 2``.
* **i-exp / softmax**: ``x = -z ln2 + p`` with ``p in (-ln2, 0]``, ``exp(p) ~ 0.3585 (p + 1.353)^2 + 0.344``:
  ``q_ln2 = floor(ln2 / S)``, ``z = floor(-q / q_ln2)``, ``p = q + z q_ln2``,
  ``e = ((p + q_b)^2 + q_c) >> z``; softmax ``floor(e 2^out_bits / sum e)`` at scale ``2^-out_bits``.
* **i-SiLU**: ``x sigmoid(x)`` with ``e = i-exp(-|q|)`` (``exp(-|x|)`` at scale ``EXP_A S^2``) and
  ``one = q_b^2 + q_c`` (i-exp of 0): ``sigmoid = one / (one + e)`` for ``x >= 0``, ``e / (one + e)``
  below, an integer division rounded to ``2^-sig_bits``; ``y = q sigmoid`` at scale ``S 2^-sig_bits``.
* **i-LayerNorm**: integer mean ``floor(sum q / n)``, variance ``floor(sum (q - mean)^2 / n)`` (plus eps
  at the input's scale squared), ``std = isqrt(var << 16)`` (8 more bits) by integer Newton iteration, and
  ``round(((q - mean) << norm_bits) / std)`` at scale ``2^-norm_bits``, then ``* gamma + beta``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mpsearch.execution import ir
from mpsearch.execution.kernels._base import Backend, Kernel

GELU_A, GELU_B = -0.2888, -1.769
EXP_A, EXP_B, EXP_C = 0.3585, 1.353, 0.344
#: extra bits of the LayerNorm standard deviation (its square root taken of ``var << 2 STD_BITS``).
STD_BITS = 8
#: a larger ``z`` leaves nothing of ``e`` (``e < 2^40``); shifts stay defined in int64.
MAX_EXP_SHIFT = 40


def igelu_consts(scale: float) -> dict[str, float | int]:
    """``q_b``, ``q_c``, ``clip`` and the output scale ``S S_L / 2`` of i-GELU on inputs of ``scale``."""
    s1 = scale / math.sqrt(2.0)
    s_l = -GELU_A * s1 * s1
    return {"q_b": math.floor(GELU_B / s1), "q_c": math.floor(1.0 / s_l), "clip": math.floor(-GELU_B / s1),
            "out_scale": scale * s_l / 2.0}


def isoftmax_consts(scale: float) -> dict[str, int]:
    """``q_ln2``, ``q_b``, ``q_c`` of i-exp on inputs of ``scale``."""
    return {"q_ln2": math.floor(math.log(2.0) / scale), "q_b": math.floor(EXP_B / scale),
            "q_c": math.floor(EXP_C / (EXP_A * scale * scale))}


def isilu_consts(scale: float) -> dict[str, int]:
    """``q_ln2``, ``q_b``, ``q_c`` of i-SiLU on inputs of ``scale`` (its i-exp's constants)."""
    return isoftmax_consts(scale)


def isqrt(n: Tensor) -> Tensor:
    """``floor(sqrt(n))`` of non-negative int64 ``n`` by integer Newton iteration, from above."""
    n = n.to(torch.int64)
    bits = torch.zeros_like(n)
    v = n.clone()
    while bool((v > 0).any()):  # bit length of n
        bits += (v > 0).to(torch.int64)
        v = v >> 1
    x = torch.bitwise_left_shift(torch.ones_like(n), (bits + 1) >> 1)  # 2^ceil(bits/2) >= sqrt(n)
    while True:
        y = (x + torch.div(n, x.clamp(min=1), rounding_mode="floor")) >> 1
        done = y >= x
        if bool(done.all()):
            return torch.where(n > 0, x, torch.zeros_like(x))
        x = torch.where(done, x, y)


def _round_shift(y: Tensor, s: int) -> Tensor:
    return (y + (1 << (s - 1))) >> s if s > 0 else y


def igelu(q: Tensor, q_b: int, q_c: int, clip: int, out_shift: int = 0) -> Tensor:
    """i-GELU of int64 ``q`` (zero point removed); int64 at scale ``out_scale * 2^out_shift``."""
    q = q.to(torch.int64)
    t = torch.clamp(q.abs(), max=clip) + q_b
    erf_l = q_c - t * t
    return _round_shift(q * (torch.sign(q) * erf_l + q_c), out_shift)


def iexp(q: Tensor, q_ln2: int, q_b: int, q_c: int) -> Tensor:
    """i-exp of int64 ``q <= 0`` at scale ``EXP_A S^2`` (see the module docstring)."""
    z = torch.div(-q, q_ln2, rounding_mode="floor")
    p = q + z * q_ln2
    e = (p + q_b) * (p + q_b) + q_c
    return torch.bitwise_right_shift(e, z.clamp(max=MAX_EXP_SHIFT))


def isoftmax(q: Tensor, dim: int, q_ln2: int, q_b: int, q_c: int, out_bits: int, mask: Tensor | None = None) -> Tensor:
    """Integer softmax of int64 ``q`` along ``dim``, at scale ``2^-out_bits`` (``mask``: True -> 0)."""
    q = q.to(torch.int64)
    if mask is not None:
        q = q.masked_fill(mask, torch.iinfo(torch.int64).min // 4)
    q = q - q.amax(dim=dim, keepdim=True)
    e = iexp(q.clamp(min=-q_ln2 * MAX_EXP_SHIFT), q_ln2, q_b, q_c)
    if mask is not None:
        e = e.masked_fill(mask, 0)
    total = e.sum(dim=dim, keepdim=True).clamp(min=1)
    return torch.div(torch.bitwise_left_shift(e, out_bits), total, rounding_mode="floor")


def isilu(q: Tensor, q_ln2: int, q_b: int, q_c: int, sig_bits: int, out_shift: int = 0) -> Tensor:
    """i-SiLU of int64 ``q`` (zero point removed); int64 at scale ``S 2^(out_shift - sig_bits)``."""
    q = q.to(torch.int64)
    # exp(-|x|) <= 1 keeps every term bounded; the sign picks which side of the sigmoid it is
    e = iexp((-q.abs()).clamp(min=-q_ln2 * MAX_EXP_SHIFT), q_ln2, q_b, q_c)
    one = q_b * q_b + q_c
    num = e + (q >= 0).to(torch.int64) * (one - e)
    den = e + one
    sig = torch.div(torch.bitwise_left_shift(num, sig_bits + 1) + den, 2 * den, rounding_mode="floor")  # half up
    return _round_shift(q * sig, out_shift)


def ilayernorm(q: Tensor, eps_q: int, norm_bits: int, gamma: Tensor, beta: Tensor) -> Tensor:
    """Integer LayerNorm over the last dim of int64 ``q``, times ``gamma`` plus ``beta`` (int64)."""
    q = q.to(torch.int64)
    n = q.shape[-1]
    mean = torch.div(q.sum(-1, keepdim=True), n, rounding_mode="floor")
    d = q - mean
    var = torch.div((d * d).sum(-1, keepdim=True), n, rounding_mode="floor") + eps_q
    std = isqrt(var << 2 * STD_BITS).clamp(min=1)  # std * 2^STD_BITS: the floor costs 2^-STD_BITS of it
    num = torch.bitwise_left_shift(d, norm_bits + STD_BITS)
    y = torch.div(2 * num + std, 2 * std, rounding_mode="floor")  # round half up
    return y * gamma.to(torch.int64) + beta.to(torch.int64)


def prepare_igelu(op: ir.IGelu, device: torch.device, backend: Backend) -> Kernel:
    return lambda x: igelu(x.to(torch.int64) - op.zp, op.q_b, op.q_c, op.clip, op.out_shift).to(torch.int32)


def prepare_isoftmax(op: ir.ISoftmax, device: torch.device, backend: Backend) -> Kernel:
    mask = None if op.mask is None else op.mask.to(device=device, dtype=torch.bool)
    return lambda x: isoftmax(x, op.dim, op.q_ln2, op.q_b, op.q_c, op.out_bits, mask).to(torch.int32)


def prepare_isilu(op: ir.ISilu, device: torch.device, backend: Backend) -> Kernel:
    return lambda x: isilu(x.to(torch.int64) - op.zp, op.q_ln2, op.q_b, op.q_c, op.sig_bits,
                           op.out_shift).to(torch.int32)


def prepare_ilayernorm(op: ir.ILayerNorm, device: torch.device, backend: Backend) -> Kernel:
    gamma, beta = op.gamma.to(device), op.beta.to(device)
    return lambda x: ilayernorm(x.to(torch.int64) - op.zp, op.eps_q, op.norm_bits, gamma, beta).to(torch.int32)


KERNELS = {"igelu": prepare_igelu, "isoftmax": prepare_isoftmax, "isilu": prepare_isilu,
           "ilayernorm": prepare_ilayernorm}
