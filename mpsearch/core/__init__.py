"""Core data types that flow through the pipeline (see DESIGN.md, "The spine")."""

from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan, LayerBits
from mpsearch.core.profile import Capabilities, HardwareProfile, LutEntry, Roofline, Rules
from mpsearch.core.types import Candidate, Join, Layer, LayerSensitivity, Sensitivity

__all__ = [
    "BitPlan",
    "Candidate",
    "Capabilities",
    "CostTable",
    "HardwareProfile",
    "Join",
    "Layer",
    "LayerBits",
    "LayerSensitivity",
    "LutEntry",
    "Roofline",
    "Rules",
    "Sensitivity",
]
