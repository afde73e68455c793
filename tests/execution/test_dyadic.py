"""Dyadic multipliers and the requant kernel, on hand-computed integers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpsearch.execution import dyadic, is_pure_shift, rescale_int
from mpsearch.execution import ir
from mpsearch.execution.kernels import KERNELS


def test_dyadic_hand_values() -> None:
    m, s = dyadic(np.array([0.5, 0.75, 1.0, 4.0, 1 / 3]))
    assert m.tolist()[:4] == [1, 3, 1, 4] and s.tolist()[:4] == [1, 2, 0, 0]
    # 1/3 = 0.0101..b: s = 32 puts the leading bit at 2^30; m = round(2^32 / 3) = 1431655765 (odd).
    assert (int(m[4]), int(s[4])) == (1431655765, 32)
    assert is_pure_shift(m[[0, 2, 3]], s[[0, 2, 3]]) and not is_pure_shift(m[:2], s[:2])


def test_dyadic_precision_and_range() -> None:
    r = np.random.default_rng(0).uniform(1e-6, 100.0, size=1000)
    m, s = dyadic(r)
    assert np.all(m < 2**31) and np.all(m >= 1)
    rel = np.abs(m / 2.0**s - r) / r
    assert rel.max() < 2**-30  # 31-bit multiplier: relative error below half an ulp of 2^-30
    with pytest.raises(ValueError):
        dyadic(np.array([0.0]))


def test_rescale_int_rounding() -> None:
    # 5/2 = 2.5, -5/2 = -2.5, -7/2 = -3.5, 7/2 = 3.5
    assert [rescale_int(x, 1, 1) for x in (5, -5, -7, 7)] == [3, -2, -3, 4]
    assert [rescale_int(x, 1, 1, "half_even") for x in (5, -5, -7, 7)] == [2, -2, -4, 4]
    assert rescale_int(3, 1431655765, 32) == 1  # 3 * (1/3) ~ 0.99999999977 -> 1


def _requant(x: list[int], m: int, s: int, zp_in: int = 0, zp_out: int = 0, lo: int = -128, hi: int = 127,
             rounding: str = "half_up") -> list[int]:
    t = lambda v: torch.tensor(v, dtype=torch.int32)  # noqa: E731
    op = ir.Requant(name="y", inputs=("x",), zp_in=t(zp_in), multiplier=t(m), shift=t(s), zp_out=t(zp_out),
                    lo=t(lo), hi=t(hi), out_dtype="int8", rounding=rounding)
    return KERNELS["requant"](op, torch.device("cpu"), "auto")(torch.tensor(x, dtype=torch.int32)).tolist()


def test_requant_kernel_exact_integers() -> None:
    # ratio 3/8: (x - 2) * 3 / 8, + zp_out 5, clamp to [-128, 127]
    x = [2, 6, -2, 10, 1000, -1000]
    # (0)->0, (4*3=12)/8=1.5->2, (-12)/8=-1.5->-1 (half up), 24/8=3, big -> clamp
    assert _requant(x, 3, 3, zp_in=2, zp_out=5) == [5, 7, 4, 8, 127, -128]
    assert _requant(x, 3, 3, zp_in=2, zp_out=5, rounding="half_even") == [5, 7, 3, 8, 127, -128]
    rng = np.random.default_rng(1)
    xs = rng.integers(-2**30, 2**30, size=2000).tolist()
    m, s = 1431655765, 40
    ref = [max(-128, min(127, rescale_int(v, m, s))) for v in xs]  # Python big-int reference
    assert _requant(xs, m, s) == ref
