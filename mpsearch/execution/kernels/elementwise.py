"""Generic kernels of the elementwise and shape ops: ``clamp``, ``add``, ``cat``, ``reshape``."""

from __future__ import annotations

import torch
from torch import Tensor

from mpsearch.execution import ir
from mpsearch.execution.kernels._base import DTYPES, Backend, Kernel, scalar_or


def prepare_clamp(op: ir.Clamp, device: torch.device, backend: Backend) -> Kernel:
    lo, hi = scalar_or(op.lo.to(device)), scalar_or(op.hi.to(device))

    def run(x: Tensor) -> Tensor:
        if isinstance(lo, int) and isinstance(hi, int):
            return x.clamp(lo, hi)
        lo_t = lo.to(x.dtype) if isinstance(lo, Tensor) else torch.tensor(lo, dtype=x.dtype, device=x.device)
        hi_t = hi.to(x.dtype) if isinstance(hi, Tensor) else torch.tensor(hi, dtype=x.dtype, device=x.device)
        return torch.minimum(torch.maximum(x, lo_t), hi_t)

    return run


def prepare_add(op: ir.Add, device: torch.device, backend: Backend) -> Kernel:
    return lambda a, b: a.to(torch.int32) + b.to(torch.int32)


def prepare_cat(op: ir.Cat, device: torch.device, backend: Backend) -> Kernel:
    dtype = DTYPES[op.out_dtype]
    return lambda *xs: torch.cat([x.to(dtype) for x in xs], dim=op.dim)


def prepare_reshape(op: ir.Reshape, device: torch.device, backend: Backend) -> Kernel:
    return lambda x: x.reshape(x.shape[0], *op.shape)


KERNELS = {"clamp": prepare_clamp, "add": prepare_add, "cat": prepare_cat, "reshape": prepare_reshape}
