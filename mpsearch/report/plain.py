"""Plain data for the files a run leaves: JSON-safe values, and the cost table as records."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from mpsearch.core.cost_table import CostTable
from mpsearch.core.io import check_keys


def plain(value: Any) -> Any:
    """numpy / torch scalars and containers (mappings such as ``Budgets`` too) -> JSON-safe Python values."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def table_to_dict(table: CostTable) -> dict[str, Any]:
    """A cost table as plain data (``records`` + ``ties`` + latency ``sources``)."""
    data: dict[str, Any] = {"records": plain(table.to_records()), "ties": [list(g) for g in table.ties]}
    if "latency_ms" in table.sources:
        data["latency_sources"] = [str(s) for s in table.sources["latency_ms"]]
    return data


def table_from_dict(data: Mapping[str, Any], where: str) -> CostTable:
    """Inverse of :func:`table_to_dict` (latency sources are not restored)."""
    check_keys(data, ("records", "ties", "latency_sources"), where, required=("records",))
    return CostTable.from_records(data["records"], ties=data.get("ties") or (), where=where)
