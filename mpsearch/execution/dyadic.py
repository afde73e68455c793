"""Dyadic numbers: a real rescale ratio as ``m / 2^s`` with integers m and s.

Every rescale of the integer program is ``y = round((x * m) / 2^s)``: an int64 product and an
arithmetic right shift, with the rounding done by adding half (``2^(s-1)``) before the shift
(round half up, docs/architecture.md) or, optionally, round half to even (the rounding of the fake-quant
simulation, which matters on exact ties, i.e. with power-of-two scales).

The ratio is turned into ``(m, s)`` ONCE, when the program is built (this is where floats are
allowed); ``m`` has at most :data:`MULTIPLIER_BITS` bits so that ``|x| < 2^31`` times ``m``
fits in int64. ``(m, s)`` is reduced (``m`` odd unless ``s == 0``), so a power-of-two ratio
comes out as a pure shift: ``m == 1`` (right shift by ``s``) or ``s == 0`` and ``m == 2^k``
(left shift).
"""

from __future__ import annotations

import numpy as np

#: ``m < 2^MULTIPLIER_BITS``: an int32 multiplier; ``|x| * m < 2^62`` for ``|x| < 2^31``.
MULTIPLIER_BITS = 31
#: Largest right shift used (ratios below about ``2^-23`` lose precision). With ``|x * m| < 2^62``
#: and ``|zp_out| < 2^8``, ``x * m + (zp_out << s)`` stays inside int64.
MAX_SHIFT = 54
ROUNDINGS = ("half_up", "half_even")


def dyadic(ratio: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Integer ``(m, s)`` with ``m / 2^s`` closest to ``ratio`` and ``m < 2^31``.

    Args:
        ratio: positive real ratios, any shape (float64).

    Returns:
        ``(m, s)``: int64 arrays of ratio's shape; ``m >= 1``, ``0 <= s <= MAX_SHIFT``, reduced
        so that ``m`` is odd whenever ``s > 0``.

    Raises:
        ValueError: a ratio is not finite and positive, or is ``>= 2^31`` (no int32 multiplier).
    """
    r = np.asarray(ratio, dtype=np.float64)
    if not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(f"dyadic: ratio must be finite and > 0, but got {r.ravel()[:4].tolist()}")
    if np.any(r >= 2.0**MULTIPLIER_BITS):
        raise ValueError(f"dyadic: ratio must be < 2^{MULTIPLIER_BITS}, but got {float(r.max())!r}")
    # r = f * 2^e with f in [0.5, 1): m = round(f * 2^31) * 2^(e - 31) ... choose s = 31 - e.
    _, exponent = np.frexp(r)
    s = np.clip(MULTIPLIER_BITS - exponent.astype(np.int64), 0, MAX_SHIFT)
    m = np.rint(np.ldexp(r, s.astype(np.int32))).astype(np.int64)
    # Rounding can reach 2^31 exactly (f close to 1): halve it, exactly.
    over = m >= 2**MULTIPLIER_BITS
    m = np.where(over, m // 2, m)
    s = np.where(over, s - 1, s)
    m = np.maximum(m, 1)
    # Reduce: strip common factors of two so power-of-two ratios become pure shifts.
    for _ in range(MAX_SHIFT):
        even = (m % 2 == 0) & (s > 0)
        if not even.any():
            break
        m = np.where(even, m // 2, m)
        s = np.where(even, s - 1, s)
    return m.astype(np.int64), s.astype(np.int64)


def is_pure_shift(m: np.ndarray, s: np.ndarray) -> bool:
    """True when every ``(m, s)`` is a shift: ``m == 1`` or (``s == 0`` and ``m`` a power of two)."""
    m = np.asarray(m, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    power_of_two = (m > 0) & ((m & (m - 1)) == 0)
    return bool(np.all((m == 1) | ((s == 0) & power_of_two)))


def rescale_int(x: int, m: int, s: int, rounding: str = "half_up") -> int:
    """Reference ``round(x * m / 2^s)`` on Python integers (for tests and documentation)."""
    p = int(x) * int(m)
    if s == 0:
        return p
    q, r = divmod(p, 1 << s)  # floor division: q = floor(p / 2^s), 0 <= r < 2^s
    half = 1 << (s - 1)
    if r > half or (r == half and (rounding == "half_up" or q % 2 == 1)):
        q += 1
    return q
