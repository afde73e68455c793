"""The contract of an op handler, how to add one, and the state and helpers every handler shares.

**Handler.** :func:`mpsearch.execution.to_integer` walks the fx graph of a fake-quant model and
converts each node with the handler registered for it (:mod:`mpsearch.execution.ops`):
``handler(ctx, node, module)`` for a ``call_module`` node, ``handler(ctx, node)`` for a
``call_function`` or ``call_method`` node. A handler

* reads the :class:`~._builder.Rep` of each tensor input with ``ctx.rep(arg, node)`` (what the
  integers stand for: ``scale * (q - zp)``, their bounds, a pending real clamp), which refuses
  constants and float model inputs that no activation quantizer has turned into codes;
* emits zero or more integer ops (:mod:`mpsearch.execution.ir`) with ``ctx.b.emit(op)``, naming
  new values with ``ctx.b.name(base)``; rescales go through ``ctx.b.requant``,
  ``ctx.b.common_scale`` and ``ctx.b.materialize`` (one dyadic rescale, one rounding);
* returns the :class:`~._builder.Rep` of its output;
* does float arithmetic only on scales, at conversion time (numpy float64): the ops it emits
  are integer-only;
* refuses what it cannot convert exactly with ``raise unsupported(node, ctx, why)`` (an
  :class:`~mpsearch.errors.UnsupportedModelError` naming the node and the module);
* records a quantized layer's accumulator in ``ctx.layers`` (the profiler attributes time by it)
  and an activation quantizer's codes in ``ctx.taps`` (``validate`` compares them).

How to add an op family (attention, LayerNorm, embeddings, softmax, GELU, ...):

1. the integer op(s) it runs: a frozen dataclass in :mod:`mpsearch.execution.ir` with its
   ``KIND``, listed in ``ir.OPS`` (this is also the format of ``graph.json``);
2. its handlers in a new module ``ops/<family>.py`` ending in three tables, ``MODULES`` (module
   type -> handler; first isinstance match wins), ``FUNCTIONS`` (call_function target -> handler)
   and ``METHODS`` (tensor method name -> handler), and the module listed in ``FAMILIES`` of
   ``ops/__init__.py``; an op found in no table is refused before anything runs;
3. its kernels in ``kernels/<family>.py`` (:mod:`mpsearch.execution.kernels._base`);
4. tests in tests/execution: exact integers against an int64 reference, and agreement with the
   fake-quant model.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import fx

from mpsearch.errors import UnsupportedModelError
from mpsearch.execution import ir
from mpsearch.execution.ops._builder import Builder, Rep

#: a handler: ``(ctx, node[, module]) -> Rep`` of the node's output.
Handler = Callable[..., Rep]


class Context:
    """State of one conversion: the builder, node -> Rep, the fx module and what it found."""

    def __init__(self, gm: fx.GraphModule, builder: Builder) -> None:
        self.gm = gm
        self.b = builder
        self.reps: dict[fx.Node, Any] = {}
        self.inputs: list[ir.InputQuant] = []
        self.taps: dict[str, str] = {}  # ActQuant module path -> value name of its codes
        self.layers: dict[str, str] = {}  # quantized layer name -> value name of its accumulator
        self.output: ir.OutputSpec | None = None
        self.static: dict[fx.Node, Any] = {}  # node -> value computed when the program is built
        self.dequantized: dict[str, str] = {}  # integer value -> its float32 value (float islands)
        self.integer_only = False  # refuse float islands (IntegerConfig.integer_only)

    def rep(self, arg: Any, node: fx.Node) -> Rep:
        if not isinstance(arg, fx.Node):
            raise UnsupportedModelError(f"to_integer: node {node.name!r} ({describe(node, self.gm)}) takes a "
                                        f"constant {arg!r} where a tensor is expected; not supported")
        if arg in self.static:
            raise UnsupportedModelError(f"to_integer: node {node.name!r} ({describe(node, self.gm)}) takes the "
                                        f"constant {arg.name!r} where a value of the program is expected; "
                                        "not supported")
        rep = self.reps[arg]
        if rep.dtype == "float":
            raise UnsupportedModelError(f"to_integer: node {node.name!r} ({describe(node, self.gm)}) reads the "
                                        f"model input {arg.name!r} before it is quantized; every use of a float "
                                        "input must go through an activation quantizer")
        return rep


def describe(node: fx.Node, gm: fx.GraphModule) -> str:
    """``"module conv1 (Conv2d)"`` / ``"function add"`` / ``"method view"`` for messages."""
    if node.op == "call_module":
        return f"module {node.target} ({type(gm.get_submodule(str(node.target))).__name__})"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__name__', str(node.target))}"
    if node.op == "call_method":
        return f"method {node.target}"
    return f"{node.op} {node.target}"


def unsupported(node: fx.Node, ctx: Context, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"to_integer: node {node.name!r} ({describe(node, ctx.gm)}): {why}")


def sample_shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    return tuple(int(d) for d in meta.shape[1:])


def pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def call_args(node: fx.Node, fn: Callable[..., Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Arguments of a call_function / call_method node by parameter name (defaults filled)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
        bound = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        for p, v in zip(params, node.args):
            bound[p.name] = v
    except (TypeError, ValueError):  # builtins without a signature: positional order of ``names``
        bound = dict(zip(names, node.args))
    bound.update(node.kwargs)
    return bound
