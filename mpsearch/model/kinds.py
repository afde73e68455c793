"""Which modules mpsearch quantizes, what they are, and what they cost.

Registries, not if/elif chains:

* :data:`QUANTIZABLE` maps a module class to a function giving its static facts
  (:class:`LayerSpec`). Lookup walks the class's MRO, so user subclasses of ``nn.Conv2d``
  (QAT modules, custom convs) count as conv2d. ``nn.Embedding`` is the lookup kind
  "embedding" (:data:`LOOKUP_KINDS`: no MACs, rows as output channels).
* :data:`SCALE_KEEPING_MODULES` / ``_FUNCTIONS`` / ``_METHODS`` list the ops through which
  a layer's output may travel and still reach a residual add or concat "as itself" (the
  quantization scale is kept, or BatchNorm that will be folded into the layer).
* :data:`ALIAS_MODULES` / ``_FUNCTIONS`` / ``_METHODS``: ops that return their input
  unchanged in eval mode, so two layers behind them read the same tensor.
* :data:`JOIN_FUNCTIONS` / ``_METHODS``: residual adds and concats.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LayerSpec:
    """Static facts of one quantizable module (everything that does not need a forward)."""

    kind: str
    weight_shape: tuple[int, ...]
    has_bias: bool
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    groups: int = 1
    n_spatial: int = 0  # spatial dims of the op (1 for conv1d); 0 for linear

    @property
    def n_params(self) -> int:
        """Weight + bias elements."""
        return math.prod(self.weight_shape) + (self.out_channels if self.has_bias else 0)

    @property
    def macs_per_output(self) -> int:
        """Multiply-accumulates behind one output element: (cin / groups) * prod(kernel) or in_features.

        0 for a lookup (embedding): its output is a copied row, nothing is multiplied."""
        if self.kind in LOOKUP_KINDS:
            return 0
        return math.prod(self.weight_shape) // self.out_channels


def _padding(m: nn.modules.conv._ConvNd) -> tuple[int, ...]:
    """Numeric padding per spatial dim; "same" gives the left pad (right may be one more)."""
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return (0,) * len(m.kernel_size)
        return tuple(d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size))
    return tuple(int(p) for p in m.padding)


def _conv_spec(n_spatial: int) -> Callable[[nn.Module], LayerSpec]:
    def spec(m: nn.Module) -> LayerSpec:
        cin, cout, groups = int(m.in_channels), int(m.out_channels), int(m.groups)
        # Depthwise: one filter group per input channel (channel multiplier cout / cin >= 1).
        depthwise = groups > 1 and groups == cin and cout % cin == 0
        return LayerSpec(
            kind=f"{'depthwise_' if depthwise else ''}conv{n_spatial}d",
            weight_shape=tuple(m.weight.shape),
            has_bias=m.bias is not None,
            in_channels=cin,
            out_channels=cout,
            kernel_size=tuple(int(k) for k in m.kernel_size),
            stride=tuple(int(s) for s in m.stride),
            padding=_padding(m),
            groups=groups,
            n_spatial=n_spatial,
        )

    return spec


def _linear_spec(m: nn.Module) -> LayerSpec:
    return LayerSpec(
        kind="linear",
        weight_shape=tuple(m.weight.shape),
        has_bias=m.bias is not None,
        in_channels=int(m.in_features),
        out_channels=int(m.out_features),
    )


#: Kinds whose forward looks rows up instead of multiplying: no MACs, and their input is
#: indices, which no activation quantizer reads (so they never share an input quantizer).
LOOKUP_KINDS = frozenset({"embedding"})


def _embedding_spec(m: nn.Module) -> LayerSpec:
    # weight [num_embeddings, embedding_dim]. A row is what one index looks up, so rows are the
    # "output channels" (per-row = per-token scales, axis 0 as for Linear, whose weight a tied
    # LM head shares), and embedding_dim is in_channels.
    return LayerSpec(
        kind="embedding",
        weight_shape=tuple(m.weight.shape),
        has_bias=False,
        in_channels=int(m.embedding_dim),
        out_channels=int(m.num_embeddings),
    )


#: module class -> static facts, in the order error messages list them. Classes absent here
#: (ConvTranspose, Conv3d, RNNs, EmbeddingBag) stay in floating point and are reported as
#: unsupported; nn.MultiheadAttention and transformers' Conv1D are rewritten into Linears
#: first (:mod:`mpsearch.model.canonical`).
QUANTIZABLE: dict[type[nn.Module], Callable[[nn.Module], LayerSpec]] = {
    nn.Conv1d: _conv_spec(1),
    nn.Conv2d: _conv_spec(2),
    nn.Linear: _linear_spec,
    nn.Embedding: _embedding_spec,
}


def spec_getter(module: nn.Module) -> Callable[[nn.Module], LayerSpec] | None:
    """The registry entry for ``module``'s class or its nearest registered base class."""
    for cls in type(module).__mro__:
        getter = QUANTIZABLE.get(cls)
        if getter is not None:
            return getter
    return None


def is_quantizable(module: nn.Module) -> bool:
    return spec_getter(module) is not None


def layer_spec(module: nn.Module) -> LayerSpec:
    getter = spec_getter(module)
    if getter is None:  # internal misuse, not user input
        raise TypeError(f"{type(module).__name__} is not a quantizable module")
    return getter(module)


def holds_float_weights(module: nn.Module) -> bool:
    """True for a non-quantizable module that directly owns a weight matrix/kernel (dim >= 2).

    1-D parameters (BatchNorm / LayerNorm affine, PReLU slopes) are not "weights" here:
    they are folded or stay float by design and need no report.
    """
    if is_quantizable(module):
        return False
    return any(p.dim() >= 2 for p in module.parameters(recurse=False))


def macs_per_example(spec: LayerSpec, output_shape: tuple[int, ...], batch_size: int) -> tuple[int, bool]:
    """MACs of one call for one example, from the real output shape.

    conv: out_elems_per_example * (cin / groups) * prod(kernel);
    linear: out_features * in_features * prod(extra leading dims per example), so
    ``[B, T, D_in] -> [B, T, D_out]`` is ``T * D_in * D_out`` per example;
    embedding: 0 (a lookup).

    Returns:
        (macs, exact): ``exact`` is False when the output could not be split into
        ``batch_size`` examples (then the whole call is counted as one example).
    """
    numel = math.prod(output_shape)
    if spec.n_spatial and len(output_shape) == spec.n_spatial + 1:
        per_example, exact = numel, True  # unbatched conv input (C, *spatial)
    elif batch_size > 0 and numel % batch_size == 0:
        per_example, exact = numel // batch_size, True
    else:
        per_example, exact = numel, False
    return per_example * spec.macs_per_output, exact


# -- ops through which a layer's output keeps its identity ------------------------------

SCALE_KEEPING_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.Flatten, nn.Unflatten,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity,
)

SCALE_KEEPING_FUNCTIONS: frozenset[Any] = frozenset({
    F.relu, F.relu_, F.relu6, torch.relu, torch.relu_,
    F.max_pool1d, F.max_pool2d, torch.max_pool1d, torch.max_pool2d,
    F.avg_pool1d, F.avg_pool2d, torch.avg_pool1d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
    F.dropout, F.dropout1d, F.dropout2d, F.batch_norm,
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose,
})

SCALE_KEEPING_METHODS: frozenset[str] = frozenset({
    "relu", "relu_", "view", "reshape", "flatten", "contiguous", "permute", "transpose",
    "squeeze", "unsqueeze", "clone", "detach",
})

# Ops that return their input unchanged in eval mode: layers behind them share an input.
ALIAS_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
)
ALIAS_FUNCTIONS: frozenset[Any] = frozenset({F.dropout, F.dropout1d, F.dropout2d})
ALIAS_METHODS: frozenset[str] = frozenset({"contiguous", "clone", "detach"})

# Residual adds and concats: op name by fx target.
JOIN_FUNCTIONS: dict[Any, str] = {
    operator.add: "add", operator.iadd: "add", torch.add: "add",
    torch.cat: "cat", torch.concat: "cat", torch.concatenate: "cat",
}
JOIN_METHODS: dict[str, str] = {"add": "add", "add_": "add", "__add__": "add", "__iadd__": "add"}
