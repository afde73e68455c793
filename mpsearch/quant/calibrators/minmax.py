"""Min-max calibration: the range is the smallest and largest value seen."""

from __future__ import annotations

from torch import Tensor

from mpsearch.quant.calibrators._base import Calibrator
from mpsearch.quant.quantizer import qparams
from mpsearch.quant.spec import QuantSpec


class MinMaxCalibrator(Calibrator):
    """Scale and zero point from the running min and max of each row (no clipping)."""

    name = "minmax"

    def _compute_rows(self, spec: QuantSpec) -> tuple[Tensor, Tensor]:
        return qparams(self.min_val, self.max_val, spec)  # type: ignore[arg-type]
