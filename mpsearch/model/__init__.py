"""Discover the quantizable layers of a torch model (names, shapes, params, MACs, ties),
rewrite modules that hide their weights into plain Linears (canonicalize), and fold
BatchNorm into the layer before it."""

from mpsearch.model.attention import PackedAttention
from mpsearch.model.canonical import canonical_view, canonicalize, is_canonical
from mpsearch.model.discover import discover, discover_graph
from mpsearch.model.fold import fold_batchnorm
from mpsearch.model.graph import ModelGraph, input_ties, weight_ties
from mpsearch.model.matmuls import ActivationMatmul

__all__ = ["ActivationMatmul", "ModelGraph", "PackedAttention", "canonical_view", "canonicalize", "discover", "discover_graph",
           "fold_batchnorm", "input_ties", "is_canonical", "weight_ties"]
