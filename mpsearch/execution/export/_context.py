"""State of one export: the fx graph's recorded values, the ONNX names given so far, the options.

The fake-quant graph is run twice on the example inputs, at batch ``N`` and ``N + 1``: a value
computed from sizes alone (``x.shape``, ``x.size(0) // 4``, ``torch.arange(T)``) is *static* and
becomes a constant; an integer that differs between the runs follows the batch, so a reshape
keeps that dimension free (``0``: copy the input's, or ``-1``) and the model takes any batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx

from mpsearch.errors import UnsupportedModelError
from mpsearch.execution.export._graph import GraphBuilder
from mpsearch.execution.export.qdq import TensorRecord

#: getattr(x, name) of these reads no tensor value
META_ATTRS = ("shape", "dtype", "device", "ndim")


def static_nodes(gm: fx.GraphModule) -> set[fx.Node]:
    """Nodes whose value does not depend on the input values (parameters, sizes, functions of those).

    Module calls are never static: a layer (even at constant indices, like learned positions)
    is emitted as ONNX ops so its weight stays quantized in the file.
    """
    static: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            static.add(node)
        elif node.op == "call_function" and node.target is getattr and node.args[1] in META_ATTRS:
            static.add(node)
        elif node.op == "call_method" and node.target in ("size", "dim"):
            static.add(node)
        elif node.op in ("call_function", "call_method") and all(d in static for d in node.all_input_nodes):
            static.add(node)
    return static


class Recorder(fx.Interpreter):
    """Runs the graph once and keeps every node's value (tensors detached, on the CPU)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.values[n] = out.detach() if isinstance(out, torch.Tensor) else out
        return out


@dataclass
class Context:
    """What the op handlers read and write while translating one fx graph."""

    gm: fx.GraphModule
    g: GraphBuilder
    opset: int
    low_bits: str
    bias: str
    values: dict[fx.Node, Any]  # run at batch N
    values_b: dict[fx.Node, Any]  # run at batch N + 1
    static: set[fx.Node]
    names: dict[fx.Node, str] = field(default_factory=dict)  # node -> ONNX value name
    records: list[TensorRecord] = field(default_factory=list)
    act_scales: dict[str, float] = field(default_factory=dict)  # ONNX value -> its per-tensor QDQ scale

    def where(self, node: fx.Node) -> str:
        """The ONNX node-name prefix for ``node``: module path for module calls, else the fx name."""
        return str(node.target) if node.op == "call_module" else node.name

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        value = self.values[node]
        if not isinstance(value, torch.Tensor):
            raise UnsupportedModelError(f"export_onnx: node {node.name!r} must be a tensor, but is {type(value).__name__}")
        return tuple(value.shape)

    def rank(self, arg: Any) -> int:
        return len(self.shape(arg)) if isinstance(arg, fx.Node) else 0

    def follows_batch(self, arg: Any) -> bool:
        """True when the static value of ``arg`` differs between the two runs (it is the batch size)."""
        if not isinstance(arg, fx.Node):
            return False
        a, b = self.values[arg], self.values_b[arg]
        if isinstance(a, torch.Tensor):
            return a.shape != b.shape or not torch.equal(a, b)
        return a != b

    def static_value(self, arg: Any) -> Any:
        """The Python value of a literal or a static node (run at batch N)."""
        if isinstance(arg, fx.Node):
            if arg not in self.static:
                raise UnsupportedModelError(f"export_onnx: node {arg.name!r} must be known when the model is "
                                            "exported (a size or a constant), but it depends on the input values")
            return self.values[arg]
        if isinstance(arg, (tuple, list)):
            return type(arg)(self.static_value(a) for a in arg)
        return arg

    def tensor(self, arg: Any, where: str, like: str = "float32") -> str:
        """The ONNX value of ``arg``: a translated node, or a constant for a static node or a number."""
        if isinstance(arg, fx.Node) and arg in self.names:
            return self.names[arg]
        if isinstance(arg, fx.Node) and self.follows_batch(arg):
            raise UnsupportedModelError(f"export_onnx: the constant {arg.name!r} depends on the batch size; "
                                        "only reshapes may use the batch size")
        value = self.static_value(arg)
        if isinstance(value, torch.Tensor):
            value = value.cpu().numpy()
            return self.g.const(value, where, "float32" if value.dtype.kind == "f" else None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UnsupportedModelError(f"export_onnx: argument {value!r} of {where!r} must be a tensor or a number")
        return self.g.const(np.asarray(value, dtype=np.float32 if like == "float32" else np.int64), where)
