"""ModelGraph: what discovery found in a model, and the ties it implies.

Ties are groups of layers that must take one candidate. Two relations make them:

* ``Layer.shares_input_with``: layers reading one input tensor share one activation quantizer;
* ``Layer.shares_weight_with``: layers holding one weight Parameter (an embedding and the LM
  head tied to it) are one tensor, so they get one bit-width.

:func:`input_ties` (the groups the cost table uses by default) joins both; :func:`weight_ties`
gives only the second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from mpsearch.core.types import Join, Layer
from mpsearch.errors import unknown_name
from mpsearch.model.matmuls import ActivationMatmul

MODES = ("fx", "hooks")


@dataclass(frozen=True)
class ModelGraph:
    """Quantizable layers of a model, where their outputs meet, and what stays in float.

    Attributes:
        layers: quantizable layers in execution order (``Layer.index`` = position).
        joins: residual adds / concats with the layers feeding them (empty in hook mode,
            where tensor ops are invisible).
        unsupported: ``(module name, class name)`` of modules that hold weights but are not
            a quantizable kind (ConvTranspose2d, LSTM, EmbeddingBag, ...); they stay in
            floating point.
        mode: "fx" (torch.fx trace + shape propagation) or "hooks" (forward hooks).
        not_called: quantizable-kind modules that never ran as modules on the example
            inputs (unused, or used only through their weights by a parent); they stay in
            floating point.
        n_calls: layer name -> calls in one forward, for layers called more than once
            (weight sharing); their ``macs`` are summed over the calls.
        batch_size: leading dimension of the first example input (MACs are divided by it).
        activation_matmuls: matmuls between two activations (attention's QK^T and AV), in
            execution order, MACs per example; not layers (no weight), but part of the
            model's MACs (and of its BOPs, at the activation bit-widths).
    """

    layers: tuple[Layer, ...]
    joins: tuple[Join, ...] = ()
    unsupported: tuple[tuple[str, str], ...] = ()
    mode: str = "fx"
    not_called: tuple[str, ...] = ()
    n_calls: Mapping[str, int] = field(default_factory=dict)
    batch_size: int = 1
    activation_matmuls: tuple[ActivationMatmul, ...] = ()

    @property
    def activation_macs(self) -> int:
        """MACs per example of all activation matmuls."""
        return sum(m.macs for m in self.activation_matmuls)

    @property
    def total_macs(self) -> int:
        """MACs per example of the whole model: layers plus activation matmuls."""
        return sum(layer.macs for layer in self.layers) + self.activation_macs

    @property
    def names(self) -> tuple[str, ...]:
        """Layer names in execution order."""
        return tuple(layer.name for layer in self.layers)

    def layer(self, name: str) -> Layer:
        """The layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise unknown_name("layer", name, self.names, "ModelGraph")

    def join(self, name: str) -> Join:
        """The join called ``name``."""
        for j in self.joins:
            if j.name == name:
                return j
        raise unknown_name("join", name, [j.name for j in self.joins], "ModelGraph")


def _components(graph: ModelGraph | Iterable[Layer], input_edges: bool, weight_edges: bool
                ) -> list[tuple[str, ...]]:
    """Connected components (two or more layers) of the chosen relations, in execution order."""
    layers = list(graph.layers if isinstance(graph, ModelGraph) else graph)
    order = {layer.name: i for i, layer in enumerate(layers)}
    parent = {name: name for name in order}

    def find(a: str) -> str:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for layer in layers:
        others = (layer.shares_input_with if input_edges else ()) + (layer.shares_weight_with if weight_edges else ())
        for other in others:
            if other in parent:
                ra, rb = find(layer.name), find(other)
                if ra != rb:
                    parent[max(ra, rb, key=order.__getitem__)] = min(ra, rb, key=order.__getitem__)
    groups: dict[str, list[str]] = {}
    for layer in layers:
        groups.setdefault(find(layer.name), []).append(layer.name)
    return [tuple(g) for g in groups.values() if len(g) > 1]


def input_ties(graph: ModelGraph | Iterable[Layer]) -> list[tuple[str, ...]]:
    """Groups of layers that must take one candidate: shared input tensor or shared weight.

    Layers reading the same input tensor share one activation quantizer; layers holding the
    same weight Parameter (a tied embedding and LM head) are one tensor with one bit-width.
    Groups are the connected components of ``Layer.shares_input_with`` and
    ``Layer.shares_weight_with`` with two or more members; names inside a group and the groups
    themselves follow execution order.

    Args:
        graph: a :class:`ModelGraph`, or the layers from :func:`discover`.

    Returns:
        e.g. ``[("layer2.0.conv1", "layer2.0.downsample.0"), ("tok_emb", "lm_head")]``.
    """
    return _components(graph, input_edges=True, weight_edges=True)


def weight_ties(graph: ModelGraph | Iterable[Layer]) -> list[tuple[str, ...]]:
    """Groups of layers holding one weight Parameter (tied weights), in execution order.

    Args:
        graph: a :class:`ModelGraph`, or the layers from :func:`discover`.

    Returns:
        e.g. ``[("transformer.wte", "lm_head")]`` for GPT-2 with tied embeddings.
    """
    return _components(graph, input_edges=False, weight_edges=True)
