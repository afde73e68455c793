"""The numba backends' kernels of the steps between the convs (CPU): max pool on channels-last
memory, and a residual add fused with the requants that feed it alone and the requant or clamp
that alone reads it (:mod:`._numba_rowops`).

Each prepare function returns None where it does not apply (then the ops run apart); each kernel
falls back to the ops' own kernels, composed, for an input layout it does not take. Every kernel
gives the integers of its ops run apart (tests/execution/test_rowops.py, int64 references).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from mpsearch.execution import ir
from mpsearch.execution.kernels import _numba_rowops
from mpsearch.execution.kernels._base import DTYPES, Kernel, as_2d, from_2d
from mpsearch.execution.kernels._parallel import run_split
from mpsearch.execution.kernels.requant import channel_consts

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def prep_maxpool(op: ir.MaxPool) -> Kernel:
    """Window max over channels-last memory (an NCHW view of NHWC memory in and out; any other
    layout is copied to it first), int8 or int32."""
    (kh, kw), (sh, sw), (dh, dw) = op.kernel, op.stride, op.dilation
    pl, pr, pt, pb = op.padding
    pool = _numba_rowops.kernel("maxpool")

    def run(x: Tensor) -> Tensor:
        xh = as_2d(x, op.spatial_dims).permute(0, 2, 3, 1).contiguous()  # a view after a conv
        n, h, w, c = xh.shape
        oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
        ow = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
        out = torch.empty(n, oh, ow, c, dtype=xh.dtype)
        xn, on, geo, low = xh.numpy(), out.numpy(), (kh, kw, sh, sw, dh, dw, pt, pl), int(torch.iinfo(xh.dtype).min)
        run_split(lambda lo, hi: pool(xn[lo:hi], geo, low, on[lo:hi]), n, oh * ow * c)
        return from_2d(out.permute(0, 3, 1, 2), op.spatial_dims)

    return run


def _consts(op: ir.Requant | ir.Clamp | None, n: int, sample_ndim: int) -> np.ndarray | None:
    """int64 ``(5, n)`` ``m, off, s, lo, hi`` of a requant or clamp (identity for None), one value
    per channel (dim 1); None where a constant varies along another dim or the rounding is half
    to even."""
    out = np.zeros((5, n), np.int64)
    if op is None:
        out[0], out[3], out[4] = 1, INT32_MIN, INT32_MAX
        return out
    if isinstance(op, ir.Clamp):
        fake = ir.Requant(name="", inputs=(), zp_in=torch.tensor(0), multiplier=torch.tensor(1),
                          shift=torch.tensor(0), zp_out=torch.tensor(0), lo=op.lo, hi=op.hi, out_dtype="int32")
        rq = channel_consts(fake, n, sample_ndim)
    else:
        rq = channel_consts(op, n, sample_ndim)
    if rq is None:
        return None
    out[:] = np.stack(rq)
    return out


def _rows(fused: Callable[..., None], a: Tensor, b: Tensor, consts: list[np.ndarray], flags: tuple[bool, ...],
          out: Tensor) -> None:
    an, bn, on = a.numpy(), b.numpy(), out.numpy()
    run_split(lambda lo, hi: fused(an[lo:hi], bn[lo:hi], *consts, *flags, on[lo:hi]), len(an), an.shape[1])


def prep_add_group(pre: tuple[ir.Requant | None, ir.Requant | None], post: ir.Requant | ir.Clamp | None,
                   apart: Callable[[Tensor, Tensor], Tensor]) -> Kernel | None:
    """``post(pre[0](a) + pre[1](b))`` of an add in one pass over channels-last (or, with every
    constant per tensor, plain contiguous) memory.

    Args:
        pre: the requant that alone feeds each operand of the add (None: the operand as is).
        post: the requant or clamp that alone reads the add (None: the int32 sum).
        apart: the same ops run apart (the kernels of each op, composed), for other inputs.

    Returns:
        The kernel, or None where a rounding is half to even (the one-pass form is half up).
    """
    ops = (*pre, post)
    if any(isinstance(op, ir.Requant) and op.rounding != "half_up" for op in ops):
        return None
    flags = (pre[0] is not None, pre[1] is not None, post is not None)
    out_dtype = DTYPES[post.out_dtype] if isinstance(post, ir.Requant) else torch.int32
    fused = _numba_rowops.kernel("add_requant")
    per_tensor = all(t.numel() == 1 for op in ops if op is not None for t in op.tensors().values())
    tables: dict[tuple[int, int], list[np.ndarray] | None] = {}

    def consts(n: int, sample_ndim: int) -> list[np.ndarray] | None:
        if (n, sample_ndim) not in tables:
            got = [_consts(op, n, sample_ndim) for op in ops]
            tables[(n, sample_ndim)] = None if any(c is None for c in got) else got  # type: ignore[misc]
        return tables[(n, sample_ndim)]

    def run(a: Tensor, b: Tensor) -> Tensor:
        if a.shape != b.shape or a.dim() < 2 or a.numel() == 0 or a.device.type != "cpu":
            return apart(a, b)
        if a.movedim(1, -1).is_contiguous() and b.movedim(1, -1).is_contiguous():
            k = consts(a.shape[1], a.dim() - 1)  # per channel (dim 1): rows of C channels
            if k is not None:
                am, bm = a.movedim(1, -1), b.movedim(1, -1)
                out = torch.empty(am.shape, dtype=out_dtype)
                _rows(fused, am.reshape(-1, a.shape[1]), bm.reshape(-1, a.shape[1]), k, flags,
                      out.view(-1, a.shape[1]))
                return out.movedim(-1, 1)
        if per_tensor and a.is_contiguous() and b.is_contiguous():
            last = a.shape[-1]
            k = consts(last, a.dim() - 1)  # every constant one value
            if k is not None:
                out = torch.empty(a.shape, dtype=out_dtype)
                _rows(fused, a.reshape(-1, last), b.reshape(-1, last), k, flags, out.view(-1, last))
                return out
        return apart(a, b)

    return run
