"""The torch matrix products and their backends: "int32" (an int32 ``addmm``, runs anywhere) and
"int_mm" (``torch._int_mm``, int8 x int8 -> int32; CUDA's choice).

Both run the generic kernels (:mod:`.layers`, im2col convs and linears) with their GEMM. On CPU
``torch._int_mm`` (oneDNN s8s8s32) measured about 4x slower than an int32 matmul of the same int8
values (benchmarks/bench_executor.py); both are exact integer arithmetic.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from mpsearch.execution.kernels._base import Backend

log = logging.getLogger("mpsearch")

_FALLBACK_LOGGED: set[str] = set()


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def int_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for int8 ``a (M, K)`` and ``b (K, N)`` with int32 accumulation -> int32 ``(M, N)``.

    CUDA's ``_int_mm`` needs ``M > 16`` and ``K``, ``N`` multiples of 8: the operands are padded
    with zeros (which add nothing) and the result sliced. Where ``_int_mm`` refuses, an int32
    matmul is used instead and a log line says so (once per device type).
    """
    m, k = a.shape
    n = b.shape[1]
    if a.is_cuda:
        mp, kp, np_ = max(m, 17), _round_up(max(k, 8), 8), _round_up(max(n, 8), 8)
        if (mp, kp) != (m, k):
            a = F.pad(a, (0, kp - k, 0, mp - m))
        if (kp, np_) != (k, n):
            b = F.pad(b, (0, np_ - n, 0, kp - k))
        return torch._int_mm(a.contiguous(), b.contiguous())[:m, :n]
    try:
        return torch._int_mm(a, b)
    except RuntimeError as exc:  # an older build or an odd shape: int32 matmul, still integer
        key = a.device.type
        if key not in _FALLBACK_LOGGED:
            _FALLBACK_LOGGED.add(key)
            log.info("int_matmul: torch._int_mm refused %s x %s on %s (%s); using an int32 matmul",
                     tuple(a.shape), tuple(b.shape), key, str(exc).splitlines()[0])
        return a.to(torch.int32) @ b.to(torch.int32)


class Int32Gemm:
    """``(cols @ w) << k + corr`` as one int32 ``addmm``: the int8 values widened to int32, with
    the ``2^k`` folded into the int32 copy of the weight (the conversion checked that it cannot
    overflow)."""

    in_dtype = torch.int32

    def __init__(self, w_kn: Tensor, corr: Tensor, k: int) -> None:
        self.w = (w_kn.to(torch.int32) << k).contiguous()
        self.corr = corr

    def __call__(self, cols: Tensor) -> Tensor:
        return torch.addmm(self.corr, cols, self.w)


class IntMmGemm:
    """``(cols @ w) << k + corr`` with the int8 product of :func:`int_matmul`."""

    in_dtype = torch.int8

    def __init__(self, w_kn: Tensor, corr: Tensor, k: int) -> None:
        self.w = w_kn.contiguous()
        self.corr, self.k = corr, k

    def __call__(self, cols: Tensor) -> Tensor:
        acc = int_matmul(cols, self.w)
        if self.k:
            acc = acc << self.k
        return acc.add_(self.corr)


class Int32Backend(Backend):
    """The int32 torch kernels: every device, the fallback of every other backend."""

    name = "int32"

    def gemm(self, w_kn: Tensor, corr: Tensor, shift: int) -> Int32Gemm:
        return Int32Gemm(w_kn, corr, shift)


class IntMmBackend(Backend):
    """The torch kernels with ``torch._int_mm`` products."""

    name = "int_mm"

    def gemm(self, w_kn: Tensor, corr: Tensor, shift: int) -> IntMmGemm:
        return IntMmGemm(w_kn, corr, shift)
