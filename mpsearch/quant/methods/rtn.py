"""Round-to-nearest ("rtn"): the baseline every other method is measured against.

Exactly :func:`mpsearch.quant.quantizer.fake_quantize_weight`: min-max scale and zero point
per row of the spec, ``q = clamp(round(w / S) + zp, qmin, qmax)`` (half to even). Data-free.
"""

from __future__ import annotations

from torch import Tensor, nn

from mpsearch.quant.methods._base import MethodResult, WeightMethod
from mpsearch.quant.methods._common import minmax_qparams, uniform_result
from mpsearch.quant.quantizer import quantize
from mpsearch.quant.spec import QuantSpec


class RoundToNearest(WeightMethod):
    """Min-max scales, nearest integer code: the quantizer of :mod:`mpsearch.quant.quantizer`."""

    name = "rtn"

    def _quantize(self, weight: Tensor, spec: QuantSpec, calib_inputs: Tensor | None, layer: nn.Module | None,
                  name: str) -> MethodResult:
        scale, zero_point = minmax_qparams(weight, spec)
        return uniform_result(self.name, quantize(weight, scale, zero_point, spec), scale, zero_point, spec)
