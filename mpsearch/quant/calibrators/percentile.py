"""Percentile calibration: clip the range at a percentile of the observed values."""

from __future__ import annotations

import torch
from torch import Tensor

from mpsearch.core.checks import check_number
from mpsearch.quant.calibrators._base import SampledCalibrator
from mpsearch.quant.quantizer import qparams
from mpsearch.quant.spec import QuantSpec


def row_quantile(rows: Tensor, q: float) -> Tensor:
    """Per-row quantile ``q`` in [0, 1] with linear interpolation (as ``torch.quantile``).

    Sort-based, so it has no input-size limit.
    """
    ordered, _ = torch.sort(rows, dim=1)
    pos = q * (rows.shape[1] - 1)
    below = int(pos)
    above = min(below + 1, rows.shape[1] - 1)
    frac = pos - below
    return ordered[:, below] + (ordered[:, above] - ordered[:, below]) * frac


class PercentileCalibrator(SampledCalibrator):
    """Range ends at the ``percentile``-th percentile (symmetric specs: of ``|x|``).

    Asymmetric specs take ``[P(100 - p), P(p)]`` of the values; symmetric ones take
    ``P(p)`` of the magnitudes. 100 gives min-max on the kept sample.
    """

    name = "percentile"

    def __init__(self, spec: QuantSpec, percentile: float = 99.99, max_samples: int = 1 << 20, seed: int = 0) -> None:
        super().__init__(spec, max_samples=max_samples, seed=seed)
        check_number(percentile, "PercentileCalibrator", "percentile", min=50, max=100, min_exclusive=True)
        self.percentile = float(percentile)

    def _compute_rows(self, spec: QuantSpec) -> tuple[Tensor, Tensor]:
        rows = self.samples
        p = self.percentile / 100.0
        if spec.symmetric:
            amax = row_quantile(rows.abs(), p)
            return qparams(-amax, amax, spec)
        return qparams(row_quantile(rows, 1.0 - p), row_quantile(rows, p), spec)
