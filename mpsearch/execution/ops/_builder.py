"""Building blocks of the conversion: what each integer value means, and the rescales between them.

A value of the integer program stands for real numbers ``scale * (q - zp)`` (:class:`Rep`), with
``scale`` and ``zp`` numpy arrays that broadcast against one sample (no batch dimension):
``()`` per tensor, ``(C, 1, 1)`` per channel. Conversion-time float arithmetic lives here (it
is where the dyadic multipliers are computed); nothing of it runs in the integer program.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from mpsearch.execution import ir
from mpsearch.execution.dyadic import dyadic

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
#: A sum of rescaled inputs is kept below this (32x of int32 room left for what follows, like the
#: accumulators of :mod:`.layers`) when its common scale is refined.
SUM_HEADROOM_MAX = 2**26
#: At most this many halvings of the finest input scale for a sum's common scale.
MAX_SUM_SHIFT = 16


def compact(a: np.ndarray | float | int, ndim: int) -> np.ndarray:
    """``a`` with ``ndim`` dims (leading 1s added), each axis shrunk to 1 where it is constant."""
    a = np.asarray(a)
    if a.ndim > ndim:
        raise ValueError(f"compact: array of {a.ndim} dims does not fit a sample of {ndim} dims")
    a = a.reshape((1,) * (ndim - a.ndim) + a.shape)
    for axis in range(ndim):
        if a.shape[axis] > 1 and np.all(a == a.take([0], axis=axis)):
            a = a.take([0], axis=axis)
    return a.reshape(()) if a.size == 1 else a


def full(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` broadcast to the sample ``shape`` (a copy)."""
    return np.array(np.broadcast_to(a, shape))


def is_scalar(a: np.ndarray) -> bool:
    return np.asarray(a).size == 1


def int_tensor(a: np.ndarray | int, ndim: int | None = None) -> torch.Tensor:
    """An int32 tensor (compacted to a sample of ``ndim`` dims when given)."""
    arr = np.asarray(a, dtype=np.int64)
    if ndim is not None:
        arr = compact(arr, ndim)
    if arr.size and (arr.min() < INT32_MIN or arr.max() > INT32_MAX):
        raise OverflowError(f"value {arr.min()}..{arr.max()} does not fit int32")
    return torch.from_numpy(arr.astype(np.int32).copy())


@dataclass(frozen=True)
class Rep:
    """What an integer value stands for.

    Attributes:
        value: its name in the program.
        dtype: "int8" or "int32" (also "float" for a raw model input, "shape" for sizes).
        shape: per-sample shape.
        scale / zp: real value = scale * (q - zp); float64 / int64 arrays (compacted).
        lo / hi: bounds of the stored integers (int64 arrays), for overflow checks.
        clamp: a real-valued clamp (lo, hi) not yet applied (ReLU, ReLU6); it is folded into the
            next rescale when there is one (exact), else applied as an integer clamp.
        bits: bit-width when the value holds quantized-activation codes.
    """

    value: str
    dtype: str
    shape: tuple[int, ...]
    scale: np.ndarray
    zp: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    clamp: tuple[float, float] | None = None
    bits: int | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def replace(self, **kw: object) -> "Rep":
        return dataclasses.replace(self, **kw)  # type: ignore[arg-type]

    def max_abs(self) -> np.ndarray:
        """Largest ``|q - zp|`` (int64 array)."""
        return np.maximum(np.abs(self.lo - self.zp), np.abs(self.hi - self.zp))


class Builder:
    """Collects the ops of a program and names their values."""

    def __init__(self, rounding: str) -> None:
        self.ops: list[ir.Op] = []
        self.rounding = rounding
        self._names: set[str] = set()

    def name(self, base: str) -> str:
        base = base.replace(".", "_")
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def emit(self, op: ir.Op) -> None:
        self.ops.append(op)

    # -- clamps -------------------------------------------------------------------------
    def clamp_bounds(self, rep: Rep, scale: np.ndarray, zp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer bounds at (scale, zp) of the pending real clamp of ``rep`` (int64 arrays)."""
        lo_r, hi_r = rep.clamp if rep.clamp is not None else (-math.inf, math.inf)
        lo = zp + np.rint(lo_r / scale) if math.isfinite(lo_r) else np.full(np.shape(zp), INT32_MIN)
        hi = zp + np.rint(hi_r / scale) if math.isfinite(hi_r) else np.full(np.shape(zp), INT32_MAX)
        return np.asarray(lo, dtype=np.float64).clip(INT32_MIN, INT32_MAX).astype(np.int64), \
            np.asarray(hi, dtype=np.float64).clip(INT32_MIN, INT32_MAX).astype(np.int64)

    def materialize(self, rep: Rep, source: str) -> Rep:
        """Apply a pending clamp as an integer clamp (bounds rounded to the value's grid)."""
        if rep.clamp is None:
            return rep
        c_lo, c_hi = self.clamp_bounds(rep, rep.scale, rep.zp)
        lo = compact(np.maximum(rep.lo, c_lo), rep.ndim)
        hi = compact(np.minimum(rep.hi, c_hi), rep.ndim)
        name = self.name(f"{rep.value}_clamp")
        self.emit(ir.Clamp(name=name, inputs=(rep.value,), source=source,
                           lo=int_tensor(c_lo, rep.ndim), hi=int_tensor(c_hi, rep.ndim)))
        return rep.replace(value=name, lo=lo, hi=hi, clamp=None)

    # -- rescales -----------------------------------------------------------------------
    def requant(self, rep: Rep, scale: np.ndarray, zp: np.ndarray, qmin: int, qmax: int, out_dtype: str,
                source: str, bits: int | None = None, base: str | None = None) -> Rep:
        """Rescale ``rep`` to ``scale``/``zp`` with a dyadic multiplier, clamped to [qmin, qmax].

        A pending clamp of ``rep`` is folded into the output bounds (exact: rounding is monotone).
        """
        nd = rep.ndim
        scale = compact(np.asarray(scale, dtype=np.float64), nd)
        zp = compact(np.asarray(zp, dtype=np.int64), nd)
        m, s = dyadic(np.broadcast_arrays(rep.scale / scale)[0])
        c_lo, c_hi = self.clamp_bounds(rep, scale, zp)
        lo = compact(np.maximum(c_lo, qmin), nd)  # the op's clamp
        hi = compact(np.minimum(c_hi, qmax), nd)
        ratio = rep.scale / scale  # bounds of the result, for later overflow checks
        est_lo = compact(np.maximum(lo, zp + np.floor((rep.lo - rep.zp) * ratio) - 1).astype(np.int64), nd)
        est_hi = compact(np.minimum(hi, zp + np.ceil((rep.hi - rep.zp) * ratio) + 1).astype(np.int64), nd)
        name = self.name(base or f"{rep.value}_rq")
        self.emit(ir.Requant(name=name, inputs=(rep.value,), source=source, zp_in=int_tensor(rep.zp, nd),
                             multiplier=int_tensor(m, nd), shift=int_tensor(s, nd), zp_out=int_tensor(zp, nd),
                             lo=int_tensor(lo, nd), hi=int_tensor(hi, nd), out_dtype=out_dtype, bits=bits,
                             rounding=self.rounding))
        return Rep(value=name, dtype=out_dtype, shape=rep.shape, scale=scale, zp=zp, lo=est_lo, hi=est_hi, bits=bits)

    def common_scale(self, reps: list[Rep], source: str) -> list[Rep]:
        """Bring ``reps`` to one per-tensor scale (zero point 0, int32) so they can be summed.

        The scale is the finest of the inputs' scales, halved while the SUM of their bounds stays
        below :data:`SUM_HEADROOM_MAX` (at most :data:`MAX_SUM_SHIFT` times), then doubled until
        that sum fits int32. The halving matters when every input is coarse (int8 codes): the
        rescale of the coarser input then rounds at a step far below the next quantizer's, so
        the sum is rounded once, where it is requantized (as the float sum is); at the finest
        input scale itself that double rounding moved 8% of the codes after an int8 + int8 add
        by one (tested). An int32 accumulator input is already that fine and is taken as is.
        """
        reps = [self.materialize(r, source) for r in reps]
        s_c = float(min(np.min(r.scale) for r in reps))

        def total(s: float) -> float:
            return float(sum(np.max(r.max_abs() * (r.scale / s)) + 1 for r in reps))

        for _ in range(MAX_SUM_SHIFT):
            if total(s_c / 2.0) > SUM_HEADROOM_MAX:
                break
            s_c /= 2.0
        while total(s_c) > INT32_MAX:
            s_c *= 2.0
        out = []
        for r in reps:
            if np.all(r.scale == s_c) and np.all(r.zp == 0):
                out.append(r)
            else:
                out.append(self.requant(r, np.float64(s_c), np.int64(0), INT32_MIN, INT32_MAX, "int32", source))
        return out
