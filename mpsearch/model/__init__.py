"""Discover the quantizable layers of a torch model (names, shapes, params, MACs, ties),
rewrite modules that hide their weights into plain Linears (canonicalize), and fold
BatchNorm into the layer before it.

Library models (``transformers``): :func:`with_call` fixes keyword options and picks the logits,
so the model is a function of its input ids; :class:`ConcreteTracer` traces the size-dependent
Python such models run (``quantize`` falls back to it when plain torch.fx fails)."""

from mpsearch.model.attention import PackedAttention
from mpsearch.model.call import with_call
from mpsearch.model.canonical import canonical_view, canonicalize, is_canonical
from mpsearch.model.discover import discover, discover_graph
from mpsearch.model.fold import fold_batchnorm
from mpsearch.model.graph import ModelGraph, input_ties, weight_ties
from mpsearch.model.matmuls import ActivationMatmul
from mpsearch.model.concrete import ConcreteTracer, concrete_trace

__all__ = ["ActivationMatmul", "ConcreteTracer", "ModelGraph", "PackedAttention", "canonical_view", "canonicalize", "concrete_trace", "discover", "discover_graph",
           "fold_batchnorm", "input_ties", "is_canonical", "weight_ties", "with_call"]
