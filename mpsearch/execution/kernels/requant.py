"""Generic kernel of ``requant``: ``y = clamp(((x - zp_in) * m + 2^(s-1)) >> s + zp_out, lo, hi)``
(round half up) or its half-to-even variant, in int64 (torch); and the constants a backend needs
to do the same rescale its own way (:func:`requant_consts`; per output channel,
:func:`channel_consts`, for a conv's epilogue as in :mod:`._numba_direct`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from mpsearch.execution import ir
from mpsearch.execution.kernels._base import DTYPES, Backend, Kernel, scalar_or

#: A backend's faster form of a requant: ``fast(op, m, s, offset, lo, hi, out_dtype)`` (int64
#: constants of :func:`requant_consts`, bounds as ints where per tensor) -> a function that returns
#: the requant of ``x``, or None for an input it does not handle (the int64 torch form runs then);
#: or None where it does not apply to ``op`` at all.
FastRequant = Callable[[ir.Requant, Tensor, Tensor, Tensor, int | Tensor, int | Tensor, torch.dtype],
                       Callable[[Tensor], Tensor | None] | None]


def requant_consts(op: ir.Requant, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """int64 constants of a requant, each of its own broadcastable shape: ``zp_in``, ``m``, ``s``,
    ``zp_out``, ``lo``, ``hi``, ``half`` (``2^(s-1)``, 0 where ``s == 0``), ``mask`` (``2^s - 1``)
    and ``offset = half + (zp_out << s) - zp_in * m``, so that the half-up rescale is one
    multiply-add and one shift: ``clamp((x * m + offset) >> s, lo, hi)``.
    """
    def c(t: Tensor) -> Tensor:
        return t.to(device=device, dtype=torch.int64)

    zp_in, m, s, zp_out = c(op.zp_in), c(op.multiplier), c(op.shift), c(op.zp_out)
    one = torch.ones_like(s)
    half = torch.where(s > 0, torch.bitwise_left_shift(one, (s - 1).clamp(min=0)), torch.zeros_like(s))
    return {"zp_in": zp_in, "m": m, "s": s, "zp_out": zp_out, "lo": c(op.lo), "hi": c(op.hi), "half": half,
            "mask": torch.bitwise_left_shift(one, s) - 1,
            "offset": half + torch.bitwise_left_shift(zp_out, s) - zp_in * m}


def channel_consts(op: ir.Requant, n_channels: int, sample_ndim: int) -> list[np.ndarray] | None:
    """``[m, offset, s, lo, hi]`` of a half-up requant as int64 ``(n_channels,)`` arrays, one value
    per channel (dim 1 of an ``(N, C, ...)`` input with ``sample_ndim`` dims per sample), or None
    when a constant varies along another dim, the rounding is half to even or a shift is outside
    0..62."""
    if op.rounding != "half_up" or int(op.shift.min()) < 0 or int(op.shift.max()) > 62:
        return None  # (an int64 shift by 63 or more is undefined in the compiled kernels)
    k = requant_consts(op)
    out = []
    for t in (k["m"], k["offset"], k["s"], k["lo"], k["hi"]):
        if t.numel() == 1 and t.dim() <= sample_ndim:
            out.append(np.full(n_channels, int(t.reshape(-1)[0]), np.int64))
        elif t.dim() == sample_ndim and t.shape[0] == n_channels and t.shape[1:].numel() == 1:
            out.append(np.ascontiguousarray(t.reshape(-1).numpy()))
        else:
            return None
    return out


def prep_requant(op: ir.Requant, device: torch.device, fast: FastRequant | None = None) -> Kernel:
    """The kernel of one requant op: the int64 torch form, tried after ``fast`` where given (a
    backend's own form; not for half-to-even rounding)."""
    k = requant_consts(op, device)
    zp_in, m, s, zp_out, half, mask, offset = (k[n] for n in ("zp_in", "m", "s", "zp_out", "half", "mask", "offset"))
    lo, hi = scalar_or(k["lo"]), scalar_or(k["hi"])
    identity_m = bool((op.multiplier == 1).all() and (op.shift == 0).all())
    even = op.rounding == "half_even"
    out_dtype = DTYPES[op.out_dtype]
    m_, s_, off_ = scalar_or(m), scalar_or(s), scalar_or(offset)
    tensor_bounds = isinstance(lo, Tensor) or isinstance(hi, Tensor)

    def clamp(y: Tensor) -> Tensor:
        if tensor_bounds:
            return torch.minimum(torch.maximum(y, lo if isinstance(lo, Tensor) else torch.tensor(lo, device=y.device)),
                                 hi if isinstance(hi, Tensor) else torch.tensor(hi, device=y.device))
        return y.clamp_(lo, hi)

    fused = fast(op, m, s, offset, lo, hi, out_dtype) if fast is not None and not even else None

    def run(x: Tensor) -> Tensor:
        if fused is not None:
            y = fused(x)
            if y is not None:
                return y
        p = x.to(torch.int64, copy=True)  # a fresh tensor: updated in place below
        if identity_m:  # only zero points change (int64 so the subtraction cannot wrap)
            return clamp(p - zp_in + zp_out).to(out_dtype)
        if even:
            prod = (p - zp_in) * m
            y = torch.bitwise_right_shift(prod + half, s)
            tie = torch.bitwise_and(prod, mask) == half
            y = y - (tie & (s > 0) & (torch.bitwise_and(y, 1) == 1)).to(torch.int64) + zp_out
            return clamp(y).to(out_dtype)
        p.mul_(m_).add_(off_)
        y = p.bitwise_right_shift_(s_) if isinstance(s_, int) else torch.bitwise_right_shift(p, s_)
        return clamp(y).to(out_dtype)

    return run


def prepare_requant(op: ir.Requant, device: torch.device, backend: Backend) -> Kernel:
    """The generic requant kernel (the int64 torch form)."""
    return prep_requant(op, device)


KERNELS = {"requant": prepare_requant}
