"""Quantizers, calibrators and fake-quant modules (the survey's basic concepts), and the
``quantize`` verb.

Conventions (see :mod:`mpsearch.quant.quantizer`): ``q = clamp(round(r / S) + zp, qmin, qmax)``,
``r~ = S (q - zp)``, round half to even, integer zero point in ``[qmin, qmax]``.
"""

from mpsearch.quant.apply import quant_mode, quantizable_layer_names, quantize
from mpsearch.quant.calibrators import CALIBRATORS, Calibrator, get_calibrator, make_calibrator
from mpsearch.quant.config import QuantizeConfig
from mpsearch.quant.modules import ActQuant, QuantConv1d, QuantConv2d, QuantLinear, WeightQuant
from mpsearch.quant.quantizer import (
    dequantize,
    fake_quantize,
    fake_quantize_minmax,
    fake_quantize_weight,
    minmax,
    param_shape,
    qparams,
    round_up_power_of_two,
    weight_quantization_error,
)
from mpsearch.quant.quantizer import quantize as quantize_tensor
from mpsearch.quant.spec import QuantSpec, activation_spec, weight_spec

__all__ = [
    "CALIBRATORS",
    "ActQuant",
    "Calibrator",
    "QuantConv1d",
    "QuantConv2d",
    "QuantLinear",
    "QuantSpec",
    "QuantizeConfig",
    "WeightQuant",
    "activation_spec",
    "dequantize",
    "fake_quantize",
    "fake_quantize_minmax",
    "fake_quantize_weight",
    "get_calibrator",
    "make_calibrator",
    "minmax",
    "param_shape",
    "qparams",
    "quant_mode",
    "quantizable_layer_names",
    "quantize",
    "quantize_tensor",
    "round_up_power_of_two",
    "weight_quantization_error",
    "weight_spec",
]
