"""A built :class:`~._graph.GraphBuilder` -> ``onnx.ModelProto``, checked and written.

The only module of mpsearch that imports ``onnx`` (lazily, inside functions: install it with
``pip install 'mpsearch[onnx]'``).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from mpsearch.errors import ConfigError
from mpsearch.execution.export._graph import GraphBuilder, TensorSpec

PRODUCER = "mpsearch"


def require_onnx() -> Any:
    """The ``onnx`` module, or a ConfigError that says how to install it."""
    try:
        import onnx
    except ImportError as exc:  # optional dependency
        raise ConfigError("export_onnx: the 'onnx' package must be installed (pip install 'mpsearch[onnx]'), "
                          f"but importing it failed: {exc}") from None
    return onnx


def _elem(onnx: Any, name: str) -> int:
    return int(getattr(onnx.TensorProto, "FLOAT" if name == "float32" else name.upper()))


def _tensor(onnx: Any, t: TensorSpec) -> Any:
    if t.elem in ("int4", "uint4"):  # make_tensor packs two 4-bit values per byte
        return onnx.helper.make_tensor(t.name, _elem(onnx, t.elem), list(t.array.shape),
                                       t.array.astype(np.int64).ravel().tolist())
    return onnx.numpy_helper.from_array(np.ascontiguousarray(t.array), t.name)


def to_model(graph: GraphBuilder, opset: int, metadata: Mapping[str, str], graph_name: str = "mpsearch_qdq") -> Any:
    """The ``ModelProto`` of ``graph`` at ``opset`` (default domain), with ``metadata`` as metadata_props."""
    onnx = require_onnx()
    h = onnx.helper
    nodes = [h.make_node(n.op_type, list(n.inputs), list(n.outputs), name=n.name, domain=n.domain or None,
                         **n.attrs) for n in graph.nodes]
    inputs = [h.make_tensor_value_info(v.name, _elem(onnx, v.elem), list(v.shape)) for v in graph.inputs]
    outputs = [h.make_tensor_value_info(v.name, _elem(onnx, v.elem), list(v.shape)) for v in graph.outputs]
    g = h.make_graph(nodes, graph_name, inputs, outputs, [_tensor(onnx, t) for t in graph.initializers])
    from mpsearch import __version__

    model = h.make_model(g, opset_imports=[h.make_opsetid("", opset)], producer_name=PRODUCER,
                         producer_version=__version__)
    model.ir_version = min(model.ir_version, 10)  # onnxruntime 1.18+ reads IR 10 (opset 21's)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def check(model: Any) -> None:
    """``onnx.checker.check_model(full_check=True)``: the model is valid ONNX (types and shapes too)."""
    onnx = require_onnx()
    onnx.checker.check_model(model, full_check=True)


def serialize(model: Any) -> bytes:
    return model.SerializeToString()


def metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """``metadata_props`` of the ONNX file at ``path`` as a dict."""
    onnx = require_onnx()
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def load(path: str | os.PathLike[str]) -> Any:
    """The ``ModelProto`` at ``path`` (for tests and reports)."""
    return require_onnx().load(str(path))


def initializer_array(model: Any, name: str) -> np.ndarray:
    """The values of initializer ``name`` (int4 / uint4 unpacked to int8 / uint8)."""
    onnx = require_onnx()
    for t in model.graph.initializer:
        if t.name == name:
            return onnx.numpy_helper.to_array(t)
    raise KeyError(name)
