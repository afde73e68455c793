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
from mpsearch.execution.kernels._parallel import run_split

_KERNEL: list[Callable[..., None]] = []
_ARGS: dict[tuple[float, int, int, int], tuple[np.float32, ...]] = {}  # float32 scalars of each boundary


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
    if x.device.type != "cpu" or x.dtype != torch.float32 or qmin < -128 or qmax > 127:
        return None
    if not _KERNEL:  # (checked first: find_spec costs microseconds per call)
        if not _numba_jit.available():
            return None
        _KERNEL.append(_numba_jit.jit(quantize_py))
    xn = x.contiguous().view(-1).numpy()
    out = np.empty(xn.shape, np.int8)
    k = _ARGS.get((scale, zero_point, qmin, qmax))
    if k is None:
        k = _ARGS.setdefault((scale, zero_point, qmin, qmax), tuple(np.float32(v) for v in (scale, zero_point, qmin, qmax)))
    run_split(lambda lo, hi: _KERNEL[0](xn[lo:hi], *k, out[lo:hi]), len(xn), 1)
    return torch.from_numpy(out).view(x.shape)
