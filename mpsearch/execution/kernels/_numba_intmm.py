"""numba kernels around ``torch._int_mm`` (the "int_mm_fused" backend, :mod:`.intmm_cpu`): the int8
im2col (:func:`im2col_py`), the epilogue that turns the int32 product into the layer's accumulator
and, fused, the requant's codes (:func:`epilogue_py`). Integer arithmetic only (the tests read the compiled code).

Contract of the epilogue, the same integers as the direct conv of :mod:`._numba_conv`: for the
int32 product ``p`` of one output and channel ``o``, ``a = int32((int64(p) << shift) + corr[o])``
(wrapping as the int32 sums of the other kernels do), then either ``a`` itself or
``clamp((int64(a) * m[o] + off[o]) >> s[o], lo[o], hi[o])`` (the one-pass half-up requant of
:func:`.requant.channel_consts`). ``consts`` is int64 ``(5, C)``: ``corr, off, s, lo, hi``; ``m``
int32 ``(C,)``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mpsearch.execution.kernels._numba_jit import jit

_KERNELS: dict[str, Callable[..., None]] = {}


def im2col_py(x: Any, geom: Any, zp: int, cols: Any) -> None:
    """int8 ``x (N, H, W, C)`` (channels last) -> int8 ``cols (N * OH * OW, kh * kw * C)``, columns
    in ``(kh, kw, C)`` order; taps outside the image hold ``zp`` (the code of a real 0).
    ``geom = (kh, kw, sh, sw, dh, dw, pad_top, pad_left, oh, ow)``."""
    n_img, h, w, c = x.shape
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = geom
    row = 0
    for b in range(n_img):
        for i in range(oh):
            for j in range(ow):
                dst = cols[row]
                for u in range(kh):
                    y = i * sh + u * dh - pt
                    for v in range(kw):
                        xx = j * sw + v * dw - pl
                        seg = dst[(u * kw + v) * c:(u * kw + v + 1) * c]
                        if 0 <= y < h and 0 <= xx < w:
                            src = x[b, y, xx]
                            for t in range(c):
                                seg[t] = src[t]
                        else:
                            for t in range(c):
                                seg[t] = zp
                row += 1


def epilogue_py(acc: Any, shift: int, consts: Any, m: Any, has_rq: bool, out: Any) -> None:
    """``out[r, o]`` from the int32 product ``acc (M, C)``, see the module docstring (``m`` apart,
    as int32: the int64 product of two int32 values is one ``vpmuldq``, not a ``vpmullq``)."""
    rows, chans = acc.shape
    corr, off, s, lo, hi = consts[0], consts[1], consts[2], consts[3], consts[4]
    for r in range(rows):
        src, dst = acc[r], out[r]
        if has_rq:
            for o in range(chans):
                a = np.int32((np.int64(src[o]) << shift) + corr[o])  # wraps as an int32 sum does
                y = (np.int64(a) * np.int64(m[o]) + off[o]) >> s[o]
                dst[o] = min(max(y, lo[o]), hi[o])
        else:
            for o in range(chans):
                dst[o] = np.int32((np.int64(src[o]) << shift) + corr[o])


def kernel(name: str, cache: bool = True) -> Callable[..., None]:
    """The compiled kernel ``name`` ("im2col", "epilogue"); compiled or loaded from
    the disk cache once per process (``cache=False``: a fresh compile, not kept)."""
    src = {"im2col": im2col_py, "epilogue": epilogue_py}[name]
    if not cache:
        return jit(src, cache=False)
    if name not in _KERNELS:
        _KERNELS[name] = jit(src)
    return _KERNELS[name]


def pack_consts(corr: np.ndarray, requant: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(int64 ``(5, C)``: ``corr, off, s, lo, hi``; int32 ``m (C,)``), zeros without a requant;
    None where a multiplier does not fit int32."""
    n = len(corr)
    consts, m = np.zeros((5, n), np.int64), np.zeros(n, np.int32)
    consts[0] = corr
    if requant is not None:
        m64, off, s, lo, hi = (np.broadcast_to(np.asarray(t, np.int64), (n,)) for t in requant)
        if m64.min() < -(2**31) or m64.max() >= 2**31:
            return None
        m[:] = m64
        consts[1:] = np.stack([off, s, lo, hi])
    return consts, m
