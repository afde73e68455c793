"""Stochastic rounding ("stochastic"): round up with probability equal to the fractional part.

Same min-max scales as round-to-nearest; ``q = clamp(floor(w / S + u) + zp, qmin, qmax)`` with
``u ~ U[0, 1)`` drawn from a generator seeded by ``config.seed``, so ``E[S (q - zp)] = w`` inside
the clip range (unbiased, but with twice RTN's worst-case error). The same seed gives the same
codes. Data-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mpsearch.core.checks import check_int
from mpsearch.quant.methods._base import MethodConfig, MethodResult, WeightMethod
from mpsearch.quant.methods._common import minmax_qparams, uniform_result
from mpsearch.quant.quantizer import from_rows, to_rows
from mpsearch.quant.spec import QuantSpec


@dataclass(frozen=True)
class StochasticConfig(MethodConfig):
    """Options of stochastic rounding.

    Attributes:
        seed: seeds the uniform draws (an integer >= 0).
    """

    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.seed, "StochasticConfig", "seed", min=0)


class StochasticRounding(WeightMethod):
    """Unbiased random rounding on round-to-nearest's grid (seeded)."""

    name = "stochastic"
    config_cls = StochasticConfig

    def _quantize(self, weight: Tensor, spec: QuantSpec, calib_inputs: Tensor | None, layer: nn.Module | None,
                  name: str) -> MethodResult:
        scale, zero_point = minmax_qparams(weight, spec)
        rows = to_rows(weight, spec)
        gen = torch.Generator().manual_seed(self.config.seed)  # type: ignore[attr-defined]
        u = torch.rand(rows.shape, generator=gen).to(rows.device)
        s = scale.reshape(-1, 1).to(rows.device)
        z = zero_point.reshape(-1, 1).float().to(rows.device)
        q = torch.clamp(torch.floor(rows / s + u) + z, spec.qmin, spec.qmax)
        return uniform_result(self.name, from_rows(q, weight.shape, spec), scale, zero_point, spec)
