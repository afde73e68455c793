"""Discover the quantizable layers of a torch model (names, shapes, params, MACs, ties)
and fold BatchNorm into the layer before it."""

from mpsearch.model.discover import discover, discover_graph
from mpsearch.model.fold import fold_batchnorm
from mpsearch.model.graph import ModelGraph, input_ties

__all__ = ["ModelGraph", "discover", "discover_graph", "fold_batchnorm", "input_ties"]
