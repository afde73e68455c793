"""Bias correction ("bias_correction", Nagel et al. 2019): remove the expected output error.

Contract: quantize the weight with the ``base`` method, then set the layer's bias to
``b - E[f(x; W~) - f(x; W)]``, the expectation over the calibration inputs and, for
convolutions, over every output position, per output channel (f: the layer's op without bias;
a layer without a bias gets one, a zero bias corrected). On the calibration inputs the mean output
error per channel of the corrected layer is then 0 up to float rounding. The weight is the base
method's, unchanged (``weight_dq``, codes, scales and storage are the base's; ``bias`` is new).
Needs data; Linear, Conv1d and Conv2d (any groups).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from mpsearch.core.checks import check_choice
from mpsearch.quant.methods._base import MethodConfig, MethodResult, WeightMethod
from mpsearch.quant.methods._common import check_inputs, layer_bias, layer_forward
from mpsearch.quant.spec import QuantSpec


@dataclass(frozen=True)
class BiasCorrectionConfig(MethodConfig):
    """Options of bias correction.

    Attributes:
        base: the method that quantizes the weight first (a registered data-free name, or
            ``adaround`` / ``gptq``, which then get the same calibration inputs).
    """

    base: str = "rtn"

    def __post_init__(self) -> None:
        from mpsearch.quant.methods import METHODS

        check_choice(self.base, "BiasCorrectionConfig", "base", [n for n in METHODS if n != "bias_correction"])


class BiasCorrection(WeightMethod):
    """The base method's weight, and a bias that cancels its mean output error."""

    name = "bias_correction"
    config_cls = BiasCorrectionConfig
    needs_data = True
    layer_kinds = ("linear", "conv1d", "conv2d")

    def _quantize(self, weight: Tensor, spec: QuantSpec, calib_inputs: Tensor | None, layer: nn.Module | None,
                  name: str) -> MethodResult:
        from mpsearch.quant.methods import get_method

        x = calib_inputs
        check_inputs(layer, weight, x, self.name, name)  # type: ignore[arg-type]
        base = get_method(self.config.base)()  # type: ignore[attr-defined]
        res = base.quantize_weight(weight, spec, calib_inputs=x, layer=layer, name=name)
        with torch.no_grad():
            err = layer_forward(layer, x, res.weight_dq) - layer_forward(layer, x, weight)  # type: ignore[arg-type]
            # mean over every dim but the channel one (linear: last; conv: 1)
            ch = err.dim() - 1 if layer is None or isinstance(layer, nn.Linear) else 1
            mean_err = err.double().movedim(ch, 0).reshape(err.shape[ch], -1).mean(dim=1)
            bias = layer_bias(layer)
            bias = torch.zeros(err.shape[ch], dtype=torch.float64) if bias is None else bias.double()
            new_bias = (bias - mean_err).float()
        info = dict(res.info, base=res.method, base_run_time_s=res.run_time_s,
                    mean_abs_error_removed=float(mean_err.abs().mean()))
        return replace(res, method=self.name, bias=new_bias, info=info)
