"""Generic kernels of pooling and reductions: ``maxpool`` (window max), ``avgpool_sum`` (window
SUM; the division is in the scale of the value) and ``sum_reduce``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mpsearch.execution import ir
from mpsearch.execution.kernels._base import Backend, Kernel, as_2d, from_2d


def _windows(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]) -> Tensor:
    """Sliding windows of ``x (N, C, H, W)`` -> ``(N, C, OH, OW, kh, kw)`` (a strided view)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    x = x.unfold(2, (kh - 1) * dh + 1, sh).unfold(3, (kw - 1) * dw + 1, sw)
    if dh > 1 or dw > 1:
        x = x[..., ::dh, ::dw]
    return x


def prepare_maxpool(op: ir.MaxPool, device: torch.device, backend: Backend) -> Kernel:
    native = [True]  # F.max_pool2d takes integer tensors on CPU; elsewhere fall back to windows

    def run(x: Tensor) -> Tensor:
        x = as_2d(x, op.spatial_dims)
        if any(op.padding):
            x = F.pad(x, op.padding, value=torch.iinfo(x.dtype).min)
        if native[0]:
            try:
                y = F.max_pool2d(x, op.kernel, op.stride, 0, op.dilation)
                return from_2d(y, op.spatial_dims)
            except (RuntimeError, NotImplementedError):
                native[0] = False
        win = _windows(x, op.kernel, op.stride, op.dilation)
        return from_2d(win.amax(dim=(-2, -1)), op.spatial_dims)

    return run


def prepare_avgpool_sum(op: ir.AvgPoolSum, device: torch.device, backend: Backend) -> Kernel:
    def run(x: Tensor) -> Tensor:
        x = as_2d(x, op.spatial_dims)
        if any(op.padding):
            x = F.pad(x, op.padding, value=op.pad_value)
        if x.shape[2] == op.kernel[0] and x.shape[3] == op.kernel[1]:  # global: a plain sum
            return from_2d(x.sum((2, 3), keepdim=True, dtype=torch.int32), op.spatial_dims)
        win = _windows(x, op.kernel, op.stride, (1, 1))
        return from_2d(win.sum((-2, -1), dtype=torch.int32), op.spatial_dims)

    return run


def prepare_sum_reduce(op: ir.SumReduce, device: torch.device, backend: Backend) -> Kernel:
    return lambda x: x.sum(op.dims, keepdim=op.keepdim, dtype=torch.int32)


KERNELS = {"maxpool": prepare_maxpool, "avgpool_sum": prepare_avgpool_sum, "sum_reduce": prepare_sum_reduce}
