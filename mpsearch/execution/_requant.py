"""Requantization kernels: ``y = clamp(((x - zp_in) * m + 2^(s-1)) >> s + zp_out, lo, hi)`` (round half
up) or its half-to-even variant, in int64 (torch), or in one numba pass (``_numba_kernels.requant_py``);
and the per-channel constants that let a conv's epilogue do the same rescale
(:func:`channel_consts`, used by the fused conv + requant of :mod:`mpsearch.execution._direct`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from mpsearch.execution import _numba_kernels, ir

Kernel = Callable[..., Tensor]
DTYPES = {"int8": torch.int8, "int32": torch.int32}


def scalar_or(t: Tensor) -> int | Tensor:
    return int(t.reshape(-1)[0]) if t.numel() == 1 else t


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


def _numba_requant(op: ir.Requant, m: Tensor, s: Tensor, offset: Tensor, lo: int | Tensor, hi: int | Tensor,
                   out_dtype: torch.dtype) -> Callable[[Tensor], Tensor | None] | None:
    """The numba one-pass requant (``(x * m + offset) >> s``, clamp, cast; int64 inside) for a
    rescale whose constants are per tensor or per channel (dim 1), or None where it does not apply.

    The returned function takes int8 or int32 ``x`` whose memory is contiguous with channels last
    (``x.movedim(1, -1)`` contiguous: a conv's output) or plain contiguous with per-tensor
    constants, and returns None for any other input (the caller then runs the torch form).
    """
    consts = [m, offset, s] + [t if isinstance(t, Tensor) else torch.tensor(t, dtype=torch.int64) for t in (lo, hi)]
    per_channel = max(t.numel() for t in consts) > 1
    if per_channel and not all(t.numel() == 1 or (t.dim() >= 1 and t.shape[1:].numel() == 1) for t in consts):
        return None  # constants vary along more than the channel dim
    # torch broadcasts a (C, 1, ..., 1) constant of d dims along dim 1 of a (d + 1)-dim x only
    ch_dims = {t.dim() for t in consts if t.numel() > 1}
    max_dim = max(t.dim() for t in consts)
    flat = [t.reshape(-1).to(torch.int64).contiguous() for t in consts]
    n_ch = max(t.numel() for t in flat)
    kernel = _numba_kernels.requant_kernel()
    tiled: dict[int, list[object]] = {}

    def consts_for(cols: int) -> list[object]:
        if cols not in tiled:  # each constant as an int64 (cols,) array, repeated along the row
            tiled[cols] = [t.expand(cols).contiguous().numpy() if t.numel() == 1 else t.numpy() for t in flat]
        return tiled[cols]

    def run(x: Tensor) -> Tensor | None:
        if x.dtype not in (torch.int8, torch.int32) or x.device.type != "cpu" or x.dim() < max(1, max_dim):
            return None  # (a constant with more dims than x would change the result's shape)
        if per_channel and ch_dims != {x.dim() - 1}:
            return None
        if x.dim() >= 2 and x.movedim(1, -1).is_contiguous() and (not per_channel or x.shape[1] == n_ch):
            xm, back = x.movedim(1, -1), True
        elif not per_channel and x.is_contiguous():
            xm, back = x, False
        else:
            return None
        cols = xm.shape[-1] if xm.dim() else 1
        if cols == 0 or xm.numel() == 0:
            return None
        out = torch.empty(xm.shape, dtype=out_dtype)
        kernel(xm.reshape(-1, cols).numpy(), *consts_for(cols), out.view(-1, cols).numpy())
        return out.movedim(-1, 1) if back else out

    return run


def prep_requant(op: ir.Requant, device: torch.device, numba: bool) -> Kernel:
    """The kernel of one requant op (``numba``: use the one-pass numba kernel where it applies)."""
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

    fused = _numba_requant(op, m, s, offset, lo, hi, out_dtype) if numba and not even else None

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
