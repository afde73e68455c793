"""The ONNX graph as plain data while it is built: nodes, initializers, inputs and outputs.

Nothing here imports ``onnx``: :mod:`.onnx_proto` (the only importer) turns a finished
:class:`GraphBuilder` into a ``ModelProto``. Element types are named by strings (:data:`ELEM_TYPES`),
so the translation code and its tests never touch protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: element type name -> numpy dtype that holds its values (int4 / uint4 values are held in int8 / uint8)
ELEM_TYPES: dict[str, Any] = {
    "float32": np.float32, "int64": np.int64, "int32": np.int32, "int16": np.int16, "uint16": np.uint16,
    "int8": np.int8, "uint8": np.uint8, "int4": np.int8, "uint4": np.uint8, "bool": np.bool_,
}

#: integer range of each integer element type
ELEM_RANGES: dict[str, tuple[int, int]] = {
    "int4": (-8, 7), "uint4": (0, 15), "int8": (-128, 127), "uint8": (0, 255),
    "int16": (-32768, 32767), "uint16": (0, 65535), "int32": (-2**31, 2**31 - 1),
}


@dataclass(frozen=True)
class NodeSpec:
    """One ONNX node: ``op_type`` reading ``inputs`` and writing ``outputs`` (value names)."""

    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""


@dataclass(frozen=True)
class TensorSpec:
    """A constant tensor (initializer): ``array`` holds the values, ``elem`` names the ONNX type."""

    name: str
    array: np.ndarray
    elem: str


@dataclass(frozen=True)
class ValueSpec:
    """A graph input or output: name, element type and shape (``"batch"`` for the free batch dimension)."""

    name: str
    elem: str
    shape: tuple[int | str, ...]


class GraphBuilder:
    """Collects the nodes of one graph; every value and node name is unique."""

    def __init__(self) -> None:
        self.nodes: list[NodeSpec] = []
        self.initializers: list[TensorSpec] = []
        self.inputs: list[ValueSpec] = []
        self.outputs: list[ValueSpec] = []
        self._used: set[str] = set()

    def fresh(self, base: str) -> str:
        """A new unique name starting with ``base`` (dots kept: they name the module)."""
        name = base
        i = 1
        while name in self._used:
            name = f"{base}_{i}"
            i += 1
        self._used.add(name)
        return name

    def add(self, op_type: str, inputs: list[str] | tuple[str, ...], where: str, n_outputs: int = 1,
            domain: str = "", **attrs: Any) -> str:
        """Append a node named ``<where>/<op_type>`` and return its (first) output name.

        ``where`` is the fx node the ONNX node came from, so a profile or a trace maps every
        ONNX node back to its layer (the part before the first ``/``).
        """
        name = self.fresh(f"{where}/{op_type}")
        outs = tuple(self.fresh(f"{name}:{i}") for i in range(n_outputs))
        self.nodes.append(NodeSpec(op_type, tuple(inputs), outs, name, attrs, domain))
        return outs[0]

    def const(self, array: Any, where: str, elem: str | None = None) -> str:
        """Add an initializer holding ``array`` (element type from its dtype unless given)."""
        arr = np.asarray(array)
        if elem is None:
            elem = {np.dtype(np.float64): "float32", np.dtype(np.bool_): "bool"}.get(arr.dtype, str(arr.dtype))
        if elem not in ELEM_TYPES:
            raise ValueError(f"GraphBuilder.const: element type must be one of {sorted(ELEM_TYPES)}, but got {elem!r}")
        name = self.fresh(f"{where}:const")
        self.initializers.append(TensorSpec(name, arr.astype(ELEM_TYPES[elem]), elem))
        return name

    def add_input(self, name: str, elem: str, shape: tuple[int | str, ...]) -> str:
        self._used.add(name)
        self.inputs.append(ValueSpec(name, elem, shape))
        return name

    def add_output(self, value: str, name: str, elem: str, shape: tuple[int | str, ...]) -> None:
        """Name the graph output ``name`` (an Identity from ``value`` keeps the user's name stable)."""
        self._used.add(name)
        self.nodes.append(NodeSpec("Identity", (value,), (name,), self.fresh("output/Identity")))
        self.outputs.append(ValueSpec(name, elem, shape))

    def op_counts(self) -> dict[str, int]:
        """op type -> number of nodes (for reports and tests)."""
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
        return counts
