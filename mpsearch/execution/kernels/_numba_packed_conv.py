"""Packed low-bit conv kernel (numba + AVX-512 VNNI): an int8 im2col of the input (:func:`im2col_py`)
times the weights packed at their width (:func:`._numba_packed.pack_rows`, int4 two a byte, int2
four), in tiles of ``ROWS`` output channels x ``PIX`` output pixels whose ``ROWS x PIX`` int32
accumulators stay in registers, so each weight vector is unpacked once for ``PIX`` pixels
(:func:`._numba_packed.gemm_py`, its microkernel with ``pix = PIX``).

Integer arithmetic only, the same integers as every other conv kernel: for output pixel ``m`` and
channel ``n``, ``a = int32(((sum_k u[n, k] * cols[m, k]) - 2^(bits-1) * sum_k cols[m, k]) << shift
+ corr[n])`` with the stored unsigned codes ``u = code + 2^(bits-1)``, then ``a`` or the fused
requant ``clamp((int64(a) * m[n] + off[n]) >> s[n], lo[n], hi[n])`` (as :mod:`._numba_packed`'s
linear kernel; taps outside the image hold the input zero point, as :mod:`._numba_intmm`'s im2col).
"""

from __future__ import annotations

from typing import Any, Callable

from mpsearch.execution.kernels import _numba_packed as nk

_KERNELS: dict[str, Callable[..., None]] = {}


def im2col_py(x: Any, geom: Any, zp: int, cols: Any, sum_x: Any) -> None:
    """int8 ``x (N, H, W, C)`` (channels last) -> int8 ``cols (Mp, Kp)``: row ``m`` the ``(kh, kw, C)``
    taps of output pixel ``m`` (``zp`` outside the image), zeros past ``kh kw C`` and in the rows past
    ``N OH OW``; ``sum_x[m]`` the sum of row ``m``. ``geom = (kh, kw, sh, sw, dh, dw, pad_top, pad_left, oh, ow)``."""
    n_img, h, w, c = x.shape
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = geom
    row = 0
    for b in range(n_img):
        for i in range(oh):
            for j in range(ow):
                dst = cols[row]
                total = 0
                for u in range(kh):
                    y = i * sh + u * dh - pt
                    for v in range(kw):
                        xx = j * sw + v * dw - pl
                        base = (u * kw + v) * c
                        if 0 <= y < h and 0 <= xx < w:
                            src = x[b, y, xx]
                            for t in range(c):
                                dst[base + t] = src[t]
                                total += src[t]
                        else:
                            for t in range(c):
                                dst[base + t] = zp
                            total += zp * c
                sum_x[row] = total
                row += 1


def kernel(name: str) -> Callable[..., None]:
    """The compiled kernel ``name`` ("im2col"; "gemm": :func:`._numba_packed.gemm_py`, kept beside
    its microkernel so that numba's disk cache is renewed when the microkernel changes)."""
    if name == "gemm":
        return nk.gemm_kernel()
    if name not in _KERNELS:
        from mpsearch.execution.kernels._numba_jit import jit

        _KERNELS[name] = jit(im2col_py)
    return _KERNELS[name]
