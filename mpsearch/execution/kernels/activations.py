"""Integer kernels of the activation x activation ops and the embedding lookup: ``act_matmul``
(int8 x int8 -> int32 matrix product, e.g. QK^T and AV), ``act_mul`` (elementwise product) and
``embedding`` (int8 rows gathered, each rescaled from its own scale to the output scale)."""

from __future__ import annotations

import torch
from torch import Tensor

from mpsearch.execution import ir
from mpsearch.execution.kernels._base import Backend, Kernel


def prepare_act_matmul(op: ir.ActMatmul, device: torch.device, backend: Backend) -> Kernel:
    def run(a: Tensor, b: Tensor) -> Tensor:
        # int32 products of int8 codes: |a - zp| <= 255, so K < 2^15 terms cannot overflow int32
        return torch.matmul(a.to(torch.int32) - op.a_zp, b.to(torch.int32) - op.b_zp)

    return run


def prepare_act_mul(op: ir.ActMul, device: torch.device, backend: Backend) -> Kernel:
    return lambda a, b: (a.to(torch.int32) - op.a_zp) * (b.to(torch.int32) - op.b_zp)


def prepare_embedding(op: ir.Embedding, device: torch.device, backend: Backend) -> Kernel:
    codes = op.codes.to(device)
    zp, m, s = (t.to(device=device, dtype=torch.int64).reshape(-1) for t in (op.zp, op.multiplier, op.shift))
    half = torch.where(s > 0, torch.bitwise_left_shift(torch.ones_like(s), (s - 1).clamp(min=0)), torch.zeros_like(s))

    def run(idx: Tensor) -> Tensor:
        i = idx.to(torch.int64)
        rows = codes[i].to(torch.int64) - zp[i].unsqueeze(-1)
        y = torch.bitwise_right_shift(rows * m[i].unsqueeze(-1) + half[i].unsqueeze(-1), s[i].unsqueeze(-1))
        return y.to(torch.int32)

    return run


def prepare_const(op: ir.Const, device: torch.device, backend: Backend) -> Kernel:
    value = op.value.to(device)
    return lambda: value


KERNELS = {"const": prepare_const, "act_matmul": prepare_act_matmul, "act_mul": prepare_act_mul, "embedding": prepare_embedding}
