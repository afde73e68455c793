"""The float -> int8 input boundary in one pass (numba, CPU): the integers of
:meth:`mpsearch.execution.ir.InputQuant.__call__` (``clamp(round_half_even(x / S) + zp)``, float32
division as in the fake-quant model) without its four float temporaries.

This is the float boundary *outside* the integer program (it reads float inputs), so it is not
one of the integer kernels the machine-code audit covers; it is tested bit for bit against the
torch form (ties included).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from mpsearch.execution.kernels import _numba_jit

_KERNEL: list[Callable[..., None]] = []


def quantize_py(x: Any, scale: Any, zp: Any, qmin: Any, qmax: Any, out: Any) -> None:
    """``out[i] = clamp(rint(x[i] / scale) + zp, qmin, qmax)`` in float32, as int8 (``rint``: half to even)."""
    for i in range(x.shape[0]):
        v = np.rint(x[i] / scale) + zp
        if v < qmin:
            v = qmin
        if v > qmax:
            v = qmax
        out[i] = np.int8(v)


def quantize_input(x: Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> Tensor | None:
    """int8 codes of the float32 CPU tensor ``x`` (the boundary's integers), or None where this
    path does not apply (not CPU float32, numba missing, codes outside int8)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or not _numba_jit.available() or qmin < -128 or qmax > 127:
        return None
    if not _KERNEL:
        _KERNEL.append(_numba_jit.jit(quantize_py))
    xc = x.contiguous()
    out = torch.empty(xc.shape, dtype=torch.int8)
    f32 = np.float32
    _KERNEL[0](xc.view(-1).numpy(), f32(scale), f32(zero_point), f32(qmin), f32(qmax), out.view(-1).numpy())
    return out
