"""Seeded Rademacher probes and running per-layer sample statistics.

A probe vector is a function of (seed, probe index, layer index[, batch index]) only, so
any split of probe indices (across rounds, across ranks) reproduces the same vectors.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

_M = (1 << 61) - 1  # Mersenne prime: mixes the key into a seed below 2**63


def probe_seed(seed: int, *key: int) -> int:
    """A deterministic 62-bit seed from ``seed`` and integer keys (probe, layer, batch)."""
    h = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % _M
    for k in key:
        h = (h * 0x100000001B3 + k + 1) % _M
        h = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9 % _M
    return h


def rademacher(shape: Sequence[int], seed: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Entries +1 / -1 with probability 1/2 each, from a generator seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    bits = torch.randint(0, 2, tuple(shape), generator=gen, device=device, dtype=torch.int8)
    return bits.to(dtype).mul_(2).sub_(1)


class SampleStats:
    """Per-probe samples of one layer's trace; mean and standard error.

    The stopping rule works on the standard error of these samples, never on the change of
    a running mean between probes (PyHessian/HAWQ's ``|mean_t - mean_{t-1}| / |mean_t|``
    test stops early whenever two consecutive means happen to agree, and on a signed mean
    near zero it either never stops or stops at random).
    """

    def __init__(self) -> None:
        self.samples: list[float] = []

    def add(self, values: Sequence[float]) -> None:
        self.samples.extend(float(v) for v in values)

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else math.nan

    @property
    def stderr(self) -> float:
        n = len(self.samples)
        if n < 2:
            return math.inf
        m = self.mean
        var = sum((s - m) ** 2 for s in self.samples) / (n - 1)  # unbiased sample variance
        return math.sqrt(var / n)


def converged(stats: SampleStats, target: float, floor: float, min_probes: int) -> bool:
    """True once ``stderr <= target * max(|mean|, floor)`` after at least ``min_probes``."""
    if stats.n < min_probes:
        return False
    return stats.stderr <= target * max(abs(stats.mean), floor)


def floors(stats: Sequence[SampleStats], n_params: Sequence[int], floor_rel: float) -> list[float]:
    """Absolute floor per layer: ``floor_rel`` x the largest |mean trace per parameter| x n_params.

    A layer whose samples cancel (indefinite block, trace near 0) cannot reach a relative
    target; judged against this floor it stops once its error is negligible on the scale of
    the most curved layer, which is the scale omega compares layers on.
    """
    per_param = [abs(s.mean) / max(p, 1) for s, p in zip(stats, n_params) if s.n]
    top = max(per_param, default=0.0)
    return [floor_rel * top * p for p in n_params]
