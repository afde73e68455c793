"""Core data types that flow through the pipeline (see docs/architecture.md)."""

from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan, LayerBits
from mpsearch.core.formats import A_MODES, format_key, parse_format_key
from mpsearch.core.profile import Capabilities, FormatCapabilities, HardwareProfile, LutEntry, Roofline, Rules
from mpsearch.core.types import Candidate, Join, Layer, LayerSensitivity, Sensitivity

__all__ = [
    "A_MODES",
    "BitPlan",
    "Candidate",
    "Capabilities",
    "CostTable",
    "FormatCapabilities",
    "HardwareProfile",
    "Join",
    "Layer",
    "LayerBits",
    "LayerSensitivity",
    "LutEntry",
    "Roofline",
    "Rules",
    "Sensitivity",
    "format_key",
    "parse_format_key",
]
