"""Calibrators: choose scale and zero point from observed data (contract in ``_base.py``).

    cal = make_calibrator("percentile", spec, percentile=99.9)
    for x in batches:
        cal.observe(x)
    scale, zero_point = cal.compute()            # or cal.compute(spec.with_bits(4))
"""

from __future__ import annotations

import inspect
from typing import Any

from mpsearch.errors import ConfigError, unknown_name
from mpsearch.quant.calibrators._base import Calibrator, SampledCalibrator
from mpsearch.quant.calibrators.kl import KlCalibrator
from mpsearch.quant.calibrators.minmax import MinMaxCalibrator
from mpsearch.quant.calibrators.mse import MseCalibrator
from mpsearch.quant.calibrators.percentile import PercentileCalibrator
from mpsearch.quant.spec import QuantSpec

#: name -> calibrator class.
CALIBRATORS: dict[str, type[Calibrator]] = {
    cls.name: cls for cls in (MinMaxCalibrator, PercentileCalibrator, MseCalibrator, KlCalibrator)
}


def get_calibrator(name: str, where: str = "") -> type[Calibrator]:
    """The calibrator class registered as ``name``; unknown names list the valid ones."""
    try:
        return CALIBRATORS[name]
    except (KeyError, TypeError):
        raise unknown_name("calibrator", name, CALIBRATORS, where) from None


def calibrator_options(name: str) -> tuple[str, ...]:
    """Keyword options the calibrator ``name`` accepts besides the spec."""
    params = inspect.signature(get_calibrator(name).__init__).parameters
    return tuple(p for p in params if p not in ("self", "spec"))


def make_calibrator(name: str, spec: QuantSpec, where: str = "", **options: Any) -> Calibrator:
    """Build calibrator ``name`` for ``spec``; unknown options are refused with the valid ones."""
    cls = get_calibrator(name, where)
    valid = calibrator_options(name)
    for key in options:
        if key not in valid:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}calibrator {name!r} option must be one of {list(valid)}, but got {key!r}")
    return cls(spec, **options)


__all__ = [
    "CALIBRATORS",
    "Calibrator",
    "KlCalibrator",
    "MinMaxCalibrator",
    "MseCalibrator",
    "PercentileCalibrator",
    "SampledCalibrator",
    "calibrator_options",
    "get_calibrator",
    "make_calibrator",
]
