"""ModelGraph: what discovery found in a model, and the ties it implies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from mpsearch.core.types import Join, Layer
from mpsearch.errors import unknown_name

MODES = ("fx", "hooks")


@dataclass(frozen=True)
class ModelGraph:
    """Quantizable layers of a model, where their outputs meet, and what stays in float.

    Attributes:
        layers: quantizable layers in execution order (``Layer.index`` = position).
        joins: residual adds / concats with the layers feeding them (empty in hook mode,
            where tensor ops are invisible).
        unsupported: ``(module name, class name)`` of modules that hold weights but are not
            a quantizable kind (ConvTranspose2d, LSTM, Embedding, MultiheadAttention, ...);
            they stay in floating point.
        mode: "fx" (torch.fx trace + shape propagation) or "hooks" (forward hooks).
        not_called: quantizable-kind modules that never ran as modules on the example
            inputs (unused, or used only through their weights by a parent such as
            MultiheadAttention.out_proj); they stay in floating point.
        n_calls: layer name -> calls in one forward, for layers called more than once
            (weight sharing); their ``macs`` are summed over the calls.
        batch_size: leading dimension of the first example input (MACs are divided by it).
    """

    layers: tuple[Layer, ...]
    joins: tuple[Join, ...] = ()
    unsupported: tuple[tuple[str, str], ...] = ()
    mode: str = "fx"
    not_called: tuple[str, ...] = ()
    n_calls: Mapping[str, int] = field(default_factory=dict)
    batch_size: int = 1

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


def input_ties(graph: ModelGraph | Iterable[Layer]) -> list[tuple[str, ...]]:
    """Groups of layers that read the same input tensor (so share one activation quantizer).

    Groups are the connected components of ``Layer.shares_input_with`` with two or more
    members; names inside a group and the groups themselves follow execution order.

    Args:
        graph: a :class:`ModelGraph`, or the layers from :func:`discover`.

    Returns:
        e.g. ``[("layer2.0.conv1", "layer2.0.downsample.0")]``.
    """
    layers = list(graph.layers if isinstance(graph, ModelGraph) else graph)
    order = {layer.name: i for i, layer in enumerate(layers)}
    parent = {name: name for name in order}

    def find(a: str) -> str:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for layer in layers:
        for other in layer.shares_input_with:
            if other in parent:
                ra, rb = find(layer.name), find(other)
                if ra != rb:
                    parent[max(ra, rb, key=order.__getitem__)] = min(ra, rb, key=order.__getitem__)
    groups: dict[str, list[str]] = {}
    for layer in layers:
        groups.setdefault(find(layer.name), []).append(layer.name)
    return [tuple(g) for g in groups.values() if len(g) > 1]
