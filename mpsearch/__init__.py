"""mpsearch: per-layer mixed-precision bit allocation under hardware budgets.

Importing this package is cheap: the public verbs are loaded on first use.

    import mpsearch as mps
    layers = mps.discover(model, example_inputs)
    plan = mps.allocate(table, budgets={"size_bytes": 120_000})
"""

from __future__ import annotations

import importlib
from typing import Any

from mpsearch.core import (
    BitPlan,
    Candidate,
    CostTable,
    HardwareProfile,
    Layer,
    LayerBits,
    LayerSensitivity,
    Sensitivity,
)
from mpsearch.errors import (
    ConfigError,
    InfeasibleBudgetError,
    MpsearchError,
    UnknownNameError,
    UnsupportedModelError,
)

__version__ = "0.1.0"

# verb -> module that defines it; resolved lazily so `import mpsearch` stays light.
_VERBS = {
    "discover": "mpsearch.model",
    "canonicalize": "mpsearch.model",
    "with_call": "mpsearch.model",
    "quantize": "mpsearch.quant",
    "distill_data": "mpsearch.quant.distill",
    "equalize_": "mpsearch.quant.equalize",
    "get_method": "mpsearch.quant.methods",
    "analyze": "mpsearch.sensitivity",
    "cost_table": "mpsearch.sensitivity",
    "load_profile": "mpsearch.hardware",
    "allocate": "mpsearch.allocation",
    "pareto": "mpsearch.allocation",
    "search": "mpsearch.explorers",
    "to_integer": "mpsearch.execution",
    "validate": "mpsearch.execution",
    "export_onnx": "mpsearch.execution.export",
}


def __getattr__(name: str) -> Any:
    module = _VERBS.get(name)
    if module is None:
        raise AttributeError(f"module 'mpsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_VERBS))


__all__ = [
    "BitPlan",
    "Candidate",
    "ConfigError",
    "CostTable",
    "HardwareProfile",
    "InfeasibleBudgetError",
    "Layer",
    "LayerBits",
    "LayerSensitivity",
    "MpsearchError",
    "Sensitivity",
    "UnknownNameError",
    "UnsupportedModelError",
    *_VERBS,
]
