"""Optional CPU integer kernels compiled by numba (``pip install mpsearch[fast]``): the int16 GEMM
(:func:`gemm_i16`, for grouped convs), the channels-last depthwise conv (:func:`depthwise_py`) and
a one-pass requant (:func:`requant_py`); the groups-1 conv and linear kernel is in
:mod:`._numba_conv`; the numba backend (:mod:`.numba_cpu`) runs them. All integer arithmetic;
the tests read each kernel's LLVM IR and machine code for floating-point instructions.

Contract: :func:`gemm_i16` computes, for int16 ``a (M, K)`` holding int8 values and int16
``bt (N, K)`` holding int8 weights, ``out[m, n] = (sum_k a[m, k] * bt[n, k]) << shift + corr[n]``
with every product widened to int32 and summed in int32 -- the same integers as the torch int32
``addmm`` of :mod:`.gemm`. No floating-point value is involved.

Why int16 operands: the dot product along K of sign-extended int16 pairs is the pattern LLVM
lowers to AVX2 ``vpmaddwd`` (16 multiply-adds per instruction into int32; with AVX-512 VNNI or
AVX-VNNI, ``vpdpwssd``, which also adds into the accumulator), which measured 3-5x faster than
torch's int32 matmul on a CPU without VNNI. A product of two int8 values is at most
2^14 in magnitude, so the int32 sum of K products cannot overflow for K < 2^17; the caller's
conversion already proved that the shifted sum plus bias fits int32.

numba is imported lazily (importing this module does nothing heavy); the kernel is compiled on
first use and cached on disk (``cache=True``, outside the source tree: :mod:`._numba_jit`), so the
JIT cost is paid once per machine.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mpsearch.execution.kernels._numba_jit import jit

_KERNEL: list[Callable[..., None]] = []
_DW_KERNEL: list[Callable[..., None]] = []
_RQ_KERNEL: list[Callable[..., None]] = []


def gemm_i16_py(a: Any, bt: Any, corr: Any, shift: int, out: Any) -> None:
    """The kernel's source: ``out = (a @ bt.T) << shift + corr``, int32 sums of int16 products.

    Plain Python over numpy arrays (slow); :func:`kernel` is this function compiled by numba.
    """
    m_rows, k_len = a.shape
    n_cols = bt.shape[0]
    for m in range(m_rows):
        for n in range(n_cols):
            acc = np.int32(0)
            for k in range(k_len):  # int16 x int16 -> int32 multiply-add: vpmaddwd once vectorized
                acc += np.int32(a[m, k]) * np.int32(bt[n, k])
            out[m, n] = acc
        # The epilogue in its own loop: folded into the loop above, LLVM stops emitting vpmaddwd
        # (measured 6 vs 14 GMAC/s).
        for n in range(n_cols):
            out[m, n] = (out[m, n] << shift) + corr[n]


def compile_kernel(cache: bool = True) -> Callable[..., None]:
    """:func:`gemm_i16_py` compiled by numba (``fastmath`` off; ``cache`` keeps it on disk)."""
    return jit(gemm_i16_py, cache)


def depthwise_py(x: Any, w: Any, corr: Any, shift: int, stride: Any, dilation: Any, out: Any) -> None:
    """Depthwise conv (one filter per channel), channels last: ``out (N, OH, OW, C)`` int32 =
    ``(sum_taps x[n, i*sh + a*dh, j*sw + b*dw, c] * w[a, b, c]) << shift + corr[c]``.

    ``x (N, Hp, Wp, C)`` int8 already padded, ``w (kh, kw, C)`` int32 (int8 values); products and
    sums in int32. The inner loop runs along C, contiguous in both ``x`` and ``w`` (vpmulld).
    """
    n_img, oh, ow, chans = out.shape
    kh, kw = w.shape[0], w.shape[1]
    sh, sw = stride[0], stride[1]
    dh, dw = dilation[0], dilation[1]
    for b in range(n_img):
        for i in range(oh):
            for j in range(ow):
                for c in range(chans):
                    out[b, i, j, c] = 0
                for u in range(kh):
                    for v in range(kw):
                        for c in range(chans):
                            out[b, i, j, c] += np.int32(x[b, i * sh + u * dh, j * sw + v * dw, c]) * w[u, v, c]
                for c in range(chans):
                    out[b, i, j, c] = (out[b, i, j, c] << shift) + corr[c]


def depthwise_kernel() -> Callable[..., None]:
    """:func:`depthwise_py` compiled by numba (compiled or loaded from the disk cache once)."""
    if not _DW_KERNEL:
        _DW_KERNEL.append(jit(depthwise_py))
    return _DW_KERNEL[0]


def requant_py(x: Any, m: Any, offset: Any, shift: Any, lo: Any, hi: Any, out: Any) -> None:
    """Round-half-up rescale of ``x (M, L)`` int32, one pass: ``out[r, l] =
    clamp(((x[r, l] * m[l] + offset[l]) >> shift[l]), lo[l], hi[l])`` in int64, written as
    ``out``'s integer dtype (int8 or int32; the clamp bounds lie inside it).

    ``m``, ``offset``, ``shift``, ``lo``, ``hi`` are int64 ``(L,)``: ``offset`` already holds
    ``2^(shift-1) + (zp_out << shift) - zp_in * m`` -- the same integers as the torch requant of
    :mod:`.requant` with no int64 temporaries in memory.
    """
    rows, cols = x.shape
    for r in range(rows):
        for c in range(cols):
            y = (np.int64(x[r, c]) * m[c] + offset[c]) >> shift[c]
            if y < lo[c]:
                y = lo[c]
            if y > hi[c]:
                y = hi[c]
            out[r, c] = y


def requant_kernel() -> Callable[..., None]:
    """:func:`requant_py` compiled by numba (compiled or loaded from the disk cache once)."""
    if not _RQ_KERNEL:
        _RQ_KERNEL.append(jit(requant_py))
    return _RQ_KERNEL[0]


def kernel() -> Callable[..., None]:
    """The compiled ``_gemm_i16(a, bt, corr, shift, out)`` (compiled or loaded from cache once)."""
    if not _KERNEL:
        _KERNEL.append(compile_kernel())
    return _KERNEL[0]


def gemm_i16(a: np.ndarray, bt: np.ndarray, corr: np.ndarray, shift: int) -> np.ndarray:
    """``(a @ bt.T) << shift + corr`` in int32 for int16 ``a (M, K)``, ``bt (N, K)``, int32 ``corr (N,)``.

    Args:
        a: C-contiguous int16 ``(M, K)``, int8 values.
        bt: C-contiguous int16 ``(N, K)``, int8 values (the weight, one row per output).
        corr: int32 ``(N,)``, bias with the zero-point correction folded in.
        shift: left shift (bits) of the sum before the bias is added.

    Returns:
        A new C-contiguous int32 ``(M, N)`` array.
    """
    out = np.empty((a.shape[0], bt.shape[0]), dtype=np.int32)
    kernel()(a, bt, corr, shift, out)
    return out
