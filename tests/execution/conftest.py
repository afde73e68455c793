"""Shared fixtures: the demo models (trained once, cached by mpsearch.demo) and their quantized forms."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mpsearch.core import BitPlan, LayerBits




@pytest.fixture(scope="session")
def demo() -> Any:
    """name -> (float model, splits), loaded lazily."""
    from mpsearch.demo import load_demo

    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = load_demo(name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def mixed_plan() -> Any:
    """names -> a mixed plan: first and last layer W8A8, the others cycling W4A8, W2A8, W4A4, W8A4."""
    return _mixed_plan


def _mixed_plan(names: list[str]) -> BitPlan:
    cycle = [LayerBits(4, 8), LayerBits(2, 8), LayerBits(4, 4), LayerBits(8, 4)]
    layers = {n: cycle[i % len(cycle)] for i, n in enumerate(names)}
    layers[names[0]] = LayerBits(8, 8)
    layers[names[-1]] = LayerBits(8, 8)
    return BitPlan(layers=layers, solver="test")
