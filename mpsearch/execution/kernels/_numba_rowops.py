"""numba kernels of the steps between the convs (channels last): max pool (:func:`maxpool_py`)
and a residual add with the requants around it in one pass (:func:`add_requant_py`). Integer arithmetic only (the tests
read the compiled code); every kernel writes the integers of its ops run apart (tests against
the int64 references).

Requant constants come as int64 ``(5, C)``: ``m, off, s, lo, hi`` per channel, the one-pass
half-up rescale ``clamp((int64(x) * m + off) >> s, lo, hi)`` of :func:`.requant.channel_consts`;
a clamp is the same with ``m = 1, off = 0, s = 0``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mpsearch.execution.kernels._numba_jit import jit

_KERNELS: dict[str, Callable[..., None]] = {}


def maxpool_py(x: Any, geom: Any, lowest: int, out: Any) -> None:
    """Window max of ``x (N, H, W, C)`` into ``out (N, OH, OW, C)`` (same dtype); taps outside the
    image are ``lowest`` (the dtype's minimum: the generic kernel's padding).
    ``geom = (kh, kw, sh, sw, dh, dw, pad_top, pad_left)``."""
    n_img, h, w, c = x.shape
    oh, ow = out.shape[1], out.shape[2]
    kh, kw, sh, sw, dh, dw, pt, pl = geom
    for b in range(n_img):
        for i in range(oh):
            for j in range(ow):
                dst = out[b, i, j]
                for t in range(c):
                    dst[t] = lowest
                for u in range(kh):
                    y = i * sh + u * dh - pt
                    if y < 0 or y >= h:
                        continue
                    for v in range(kw):
                        xx = j * sw + v * dw - pl
                        if xx < 0 or xx >= w:
                            continue
                        src = x[b, y, xx]
                        for t in range(c):
                            dst[t] = max(dst[t], src[t])


def add_requant_py(a: Any, b: Any, ca: Any, cb: Any, cp: Any, has_a: bool, has_b: bool, has_p: bool, out: Any) -> None:
    """``out[r, c] = P(int32(A(a[r, c]) + B(b[r, c])))``: ``A``, ``B``, ``P`` the rescales ``ca``,
    ``cb``, ``cp`` (each skipped where its flag is off), the sum wrapping as the int32 add does.
    ``a``, ``b`` ``(M, C)`` int8 or int32; ``out (M, C)`` int8 or int32."""
    rows, chans = out.shape
    for r in range(rows):
        ar, br, dst = a[r], b[r], out[r]
        for c in range(chans):
            va = ar[c] * 1  # int64 below
            if has_a:
                va = min(max((va * ca[0, c] + ca[1, c]) >> ca[2, c], ca[3, c]), ca[4, c])
            vb = br[c] * 1
            if has_b:
                vb = min(max((vb * cb[0, c] + cb[1, c]) >> cb[2, c], cb[3, c]), cb[4, c])
            acc = np.int64(np.int32(va + vb))  # the int32 sum, wrapped as the int32 add does
            if has_p:
                acc = min(max((acc * cp[0, c] + cp[1, c]) >> cp[2, c], cp[3, c]), cp[4, c])
            dst[c] = acc


_SOURCES = {"maxpool": maxpool_py, "add_requant": add_requant_py}


def kernel(name: str, cache: bool = True) -> Callable[..., None]:
    """The compiled kernel ``name`` (``maxpool``, ``add_requant``), compiled or
    loaded from the disk cache once per process (``cache=False``: a fresh compile, not kept)."""
    if not cache:
        return jit(_SOURCES[name], cache=False)
    if name not in _KERNELS:
        _KERNELS[name] = jit(_SOURCES[name])
    return _KERNELS[name]
