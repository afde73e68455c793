"""torch.fx side of discovery: trace, run the graph on example inputs, read calls and joins.

Every function here may raise any exception when fx cannot handle the model; the caller
(:mod:`mpsearch.model.discover`) catches it and falls back to forward hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from mpsearch.core.types import Join
from mpsearch.model import kinds
from mpsearch.model.matmuls import MatmulCall, MatmulRecorder


class LeafTracer(fx.Tracer):
    """fx tracer that keeps every quantizable module and BatchNorm as one call_module node.

    The default tracer only keeps ``torch.nn`` modules whole; a user's ``class MyConv(nn.Conv2d)``
    would be traced through into ``F.conv2d`` and lost as a layer.

    A ``torch.nn`` composite that holds quantizable children without owning weights itself
    (``nn.TransformerEncoderLayer``) is traced through, so its Linear layers are not hidden
    inside one opaque node; if that trace fails, discovery falls back to hooks, which see them.
    Weight-owning ``torch.nn`` modules of unsupported kinds (LSTM) stay whole. Discovery
    traces the canonical model, where MultiheadAttention is already a PackedAttention.
    """

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if kinds.is_quantizable(m) or isinstance(m, nn.modules.batchnorm._BatchNorm):
            return True
        if not super().is_leaf_module(m, module_qualified_name):
            return False
        if kinds.holds_float_weights(m):
            return True
        return not any(kinds.is_quantizable(d) for d in m.modules())


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace ``model``; submodules of the result are ``model``'s own objects.

    The tracer stores tensor constants it meets as ``_tensor_constant<i>`` attributes on the
    root; the GraphModule copies them, and they are then removed so ``model`` is unchanged.
    """
    before = set(vars(model))
    try:
        tracer = LeafTracer()
        graph = tracer.trace(model)
        return fx.GraphModule(tracer.root, graph, type(model).__name__)
    finally:
        for key in set(vars(model)) - before:
            del model.__dict__[key]


class _ShapeRecorder(fx.Interpreter):
    """Runs the traced graph on real tensors and keeps each tensor-valued node's shape.

    ``scope()`` tells a :class:`MatmulRecorder` which module the running node belongs to
    (fx's ``nn_module_stack``; a call_module node is inside its own module).
    """

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        # The extra traceback path imports torch._dynamo (seconds) on the first error; a
        # failing run only means "fall back to hooks", which reports the real error.
        self.extra_traceback = False
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._scope: tuple[str, bool] = ("", False)

    def scope(self) -> tuple[str, bool]:
        return self._scope

    def run_node(self, n: fx.Node) -> Any:
        mod = _module(self.module, n)
        if mod is not None:
            self._scope = (str(n.target), kinds.is_quantizable(mod))
        else:
            stack = n.meta.get("nn_module_stack") or {}
            self._scope = (next(reversed(stack.values()))[0] if stack else "", False)
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            self.shapes[n.name] = tuple(out.shape)
        return out


def node_shapes(gm: fx.GraphModule, inputs: tuple[Any, ...]) -> dict[str, tuple[int, ...]]:
    """Node name -> output shape for every node whose value is a tensor."""
    return node_shapes_and_matmuls(gm, inputs)[0]


def node_shapes_and_matmuls(gm: fx.GraphModule, inputs: tuple[Any, ...]
                            ) -> tuple[dict[str, tuple[int, ...]], list[MatmulCall]]:
    """:func:`node_shapes`, and the activation matmuls the run performed, in order."""
    rec = _ShapeRecorder(gm)
    with MatmulRecorder(rec.scope) as matmuls:
        rec.run(*inputs)
    return rec.shapes, matmuls.calls


@dataclass(frozen=True)
class FxCall:
    """One call_module node of a quantizable module."""

    name: str  # module FQN
    input_key: str  # node the input resolves to (through aliases): equal keys = same tensor
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def _first_tensor_arg(n: fx.Node, shapes: dict[str, tuple[int, ...]]) -> fx.Node | None:
    for a in list(n.args) + list(n.kwargs.values()):
        if isinstance(a, fx.Node) and a.name in shapes:
            return a
    return None


def _module(gm: fx.GraphModule, n: fx.Node) -> nn.Module | None:
    return gm.get_submodule(n.target) if n.op == "call_module" else None


def _contains(registry: Any, target: Any) -> bool:
    try:
        return target in registry
    except TypeError:  # unhashable call target
        return False


def _is_op_of(gm: fx.GraphModule, n: fx.Node, modules: tuple[type, ...], functions: Any, methods: Any) -> bool:
    """Whether node ``n`` calls one of the given module types, functions or tensor methods."""
    if n.op == "call_module":
        return isinstance(_module(gm, n), modules)
    if n.op == "call_function":
        return _contains(functions, n.target)
    return n.op == "call_method" and n.target in methods


def _is_alias(gm: fx.GraphModule, n: fx.Node) -> bool:
    return _is_op_of(gm, n, kinds.ALIAS_MODULES, kinds.ALIAS_FUNCTIONS, kinds.ALIAS_METHODS)


def _is_scale_keeping(gm: fx.GraphModule, n: fx.Node) -> bool:
    return _is_op_of(gm, n, kinds.SCALE_KEEPING_MODULES, kinds.SCALE_KEEPING_FUNCTIONS, kinds.SCALE_KEEPING_METHODS)


def join_op(n: fx.Node) -> str | None:
    """"add" / "cat" for a residual add or concat node, else None."""
    if n.op == "call_function":
        return kinds.JOIN_FUNCTIONS[n.target] if _contains(kinds.JOIN_FUNCTIONS, n.target) else None
    if n.op == "call_method":
        return kinds.JOIN_METHODS.get(n.target)
    return None


def _join_inputs(n: fx.Node, shapes: dict[str, tuple[int, ...]]) -> list[fx.Node]:
    """Tensor-valued nodes a join combines (``x + 1`` has one and is no join)."""
    if join_op(n) == "cat":
        seq = n.args[0] if n.args else n.kwargs.get("tensors", ())
        return [a for a in seq if isinstance(a, fx.Node) and a.name in shapes]
    return [a for a in list(n.args) + list(n.kwargs.values()) if isinstance(a, fx.Node) and a.name in shapes]


def walk(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[list[FxCall], list[Join], list[MatmulCall]]:
    """Trace ``model``, run it on ``inputs``, and return quantizable calls, joins and matmuls.

    Returns:
        calls in execution order (a module called twice appears twice), the joins
        (adds / concats of at least two tensors), each listing the quantizable layers
        whose output reaches it through scale-keeping ops, and the activation matmuls.
    """
    gm = trace(model)
    shapes, matmuls = node_shapes_and_matmuls(gm, inputs)
    names = {id(m): n for n, m in model.named_modules()}  # first FQN of each module object

    def resolve_alias(n: fx.Node) -> fx.Node:
        while _is_alias(gm, n):
            nxt = _first_tensor_arg(n, shapes)
            if nxt is None:
                break
            n = nxt
        return n

    join_nodes = {n.name for n in gm.graph.nodes if join_op(n) and len(_join_inputs(n, shapes)) >= 2}

    def source_layer(n: fx.Node) -> str | None:
        """Quantizable layer whose output ``n`` is, through scale-keeping ops; stops at joins."""
        while True:
            mod = _module(gm, n)
            if mod is not None and kinds.is_quantizable(mod):
                return names[id(mod)]
            if n.name in join_nodes or not _is_scale_keeping(gm, n):
                return None
            nxt = _first_tensor_arg(n, shapes)
            if nxt is None:
                return None
            n = nxt

    calls: list[FxCall] = []
    joins: list[Join] = []
    for n in gm.graph.nodes:
        mod = _module(gm, n)
        if mod is not None and kinds.is_quantizable(mod):
            src = _first_tensor_arg(n, shapes)
            if src is None or n.name not in shapes:
                raise RuntimeError(f"fx node {n.name} ({n.target}) has no tensor input/output")
            key = resolve_alias(src)
            calls.append(FxCall(names[id(mod)], key.name, shapes[src.name], shapes[n.name]))
        elif n.name in join_nodes:
            layers: list[str] = []
            for a in _join_inputs(n, shapes):
                s = source_layer(a)
                if s is not None and s not in layers:
                    layers.append(s)
            joins.append(Join(name=n.name, op=join_op(n) or "", inputs=tuple(layers)))
    return calls, joins, matmuls
