"""Weight-quantization methods: one layer's weight -> its quantized weight (contract in ``_base.py``).

    method = make_method("kmeans", max_iter=50)
    res = method.quantize_weight(layer.weight, spec, calib_inputs=x, layer=layer, name="fc1")
    res.weight_dq, res.codes, res.codebook, res.extra_bits, res.run_time_s

``METHODS`` maps each registered name to its class; ``get_method(name)`` looks one up (an
unknown name lists the valid ones); ``make_method(name, **options)`` builds one from its
config's options (an unknown option lists the valid ones). Model-level transforms that are not
per-layer weight quantizers live beside this folder: cross-layer equalisation in
:mod:`mpsearch.quant.equalize`, data distillation in :mod:`mpsearch.quant.distill`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mpsearch.errors import ConfigError, unknown_name
from mpsearch.quant.methods._base import (
    FLOAT_BITS,
    MethodConfig,
    MethodResult,
    WeightMethod,
    layer_kind,
    uniform_extra_bits,
)
from mpsearch.quant.methods.adaround import AdaRound, AdaRoundConfig
from mpsearch.quant.methods.bias_correction import BiasCorrection, BiasCorrectionConfig
from mpsearch.quant.methods.binary import BinaryCode, BinaryCodeConfig
from mpsearch.quant.methods.capture import capture_inputs
from mpsearch.quant.methods.gptq import Gptq, GptqConfig
from mpsearch.quant.methods.kmeans import HessianKMeans, KMeans, KMeansConfig
from mpsearch.quant.methods.log import Log2
from mpsearch.quant.methods.rtn import RoundToNearest
from mpsearch.quant.methods.stochastic import StochasticConfig, StochasticRounding

#: name -> method class.
METHODS: dict[str, type[WeightMethod]] = {}


def register_method(cls: type[WeightMethod]) -> type[WeightMethod]:
    """Add ``cls`` to :data:`METHODS` under ``cls.name`` (a name taken twice is an error)."""
    if not cls.name or cls.name in METHODS:
        raise ConfigError(f"register_method: name must be a new non-empty name, but got {cls.name!r}")
    METHODS[cls.name] = cls
    return cls


for _cls in (RoundToNearest, StochasticRounding, AdaRound, BiasCorrection, Gptq, KMeans, HessianKMeans,
             BinaryCode, Log2):
    register_method(_cls)


def get_method(name: str, where: str = "") -> type[WeightMethod]:
    """The method class registered as ``name``; an unknown name lists the valid ones."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise unknown_name("quantization method", name, METHODS, where) from None


def method_options(name: str) -> tuple[str, ...]:
    """Option names of method ``name`` (the fields of its config dataclass)."""
    return tuple(f.name for f in dataclasses.fields(get_method(name).config_cls))


def make_method(name: str, where: str = "", **options: Any) -> WeightMethod:
    """Build method ``name`` with its config's ``options``; unknown options are refused with the valid ones."""
    cls = get_method(name, where)
    valid = method_options(name)
    for key in options:
        if key not in valid:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}method {name!r} option must be one of {list(valid)}, but got {key!r}")
    return cls(cls.config_cls(**options))


__all__ = [
    "AdaRound",
    "AdaRoundConfig",
    "BiasCorrection",
    "BiasCorrectionConfig",
    "BinaryCode",
    "BinaryCodeConfig",
    "FLOAT_BITS",
    "Gptq",
    "GptqConfig",
    "HessianKMeans",
    "KMeans",
    "KMeansConfig",
    "Log2",
    "StochasticConfig",
    "StochasticRounding",
    "METHODS",
    "MethodConfig",
    "MethodResult",
    "RoundToNearest",
    "WeightMethod",
    "capture_inputs",
    "get_method",
    "layer_kind",
    "make_method",
    "method_options",
    "register_method",
    "uniform_extra_bits",
]
