"""MSE calibration: search the clipping ratio that minimizes the quantization error."""

from __future__ import annotations

import torch
from torch import Tensor

from mpsearch.core.checks import check_int
from mpsearch.quant.calibrators._base import SampledCalibrator
from mpsearch.quant.quantizer import qparams
from mpsearch.quant.spec import QuantSpec


def row_sq_error(rows: Tensor, scale: Tensor, zero_point: Tensor, spec: QuantSpec) -> Tensor:
    """Sum of squared quantize-dequantize errors per row; scale / zero_point: (n_rows,)."""
    s = scale.reshape(-1, 1)
    z = zero_point.reshape(-1, 1).float()
    deq = (torch.clamp(torch.round(rows / s) + z, spec.qmin, spec.qmax) - z) * s
    return (deq - rows).square().sum(dim=1, dtype=torch.float64)


class MseCalibrator(SampledCalibrator):
    """Per row, clip the min-max range to ``ratio x [min, max]`` with the ratio from
    ``{1/n_grid, 2/n_grid, ..., 1}`` that gives the smallest squared error on the kept values.

    Ratio 1 (plain min-max) is the starting point and is only replaced by a strictly smaller
    error, so the result is never worse than min-max on the observed data.
    """

    name = "mse"

    def __init__(self, spec: QuantSpec, n_grid: int = 100, max_samples: int = 1 << 20, seed: int = 0) -> None:
        super().__init__(spec, max_samples=max_samples, seed=seed)
        check_int(n_grid, "MseCalibrator", "n_grid", min=1)
        self.n_grid = n_grid

    def _compute_rows(self, spec: QuantSpec) -> tuple[Tensor, Tensor]:
        rows = self.samples
        lo, hi = self.min_val, self.max_val
        best_scale, best_zp = qparams(lo, hi, spec)  # type: ignore[arg-type]
        best_err = row_sq_error(rows, best_scale, best_zp, spec)
        for k in range(self.n_grid - 1, 0, -1):
            ratio = k / self.n_grid
            scale, zp = qparams(lo * ratio, hi * ratio, spec)  # type: ignore[operator]
            err = row_sq_error(rows, scale, zp, spec)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_scale = torch.where(better, scale, best_scale)
            best_zp = torch.where(better, zp, best_zp)
        return best_scale, best_zp
