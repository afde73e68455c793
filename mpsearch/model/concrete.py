"""Tracing with example values: a torch.fx tracer that runs the example inputs alongside the trace.

Plain ``torch.fx.symbolic_trace`` fails on models whose Python code branches on sizes or reads
them as numbers (``if batch_size != position_ids.shape[0]``, ``buffer[:, :seq_len]``, ``for x in
shape``), which is what the models of the ``transformers`` library do. :class:`ConcreteTracer`
keeps, next to every proxy, the value the op has on the example inputs. Where Python needs a
real value (``bool``, ``int``, an index, ``len``, iteration) it takes the example's; everything
else is recorded as usual. So:

* control flow on sizes is fixed to the example's branch (trace with inputs of the sizes you
  will run); control flow on the input's *values* (``if y.sum() > 0``) is still refused, as by
  plain fx, since baking one branch would be silently wrong for other inputs: every proxy knows
  whether it depends on input values (``data_dependent``) or only on sizes and constants;
* a size read as a number is baked into the graph as a constant; a size passed on as a proxy
  (``x.view(x.shape[0], ...)``) stays symbolic, so the batch size may still change when only
  the batch dimension is used that way.

The tracer imports nothing of ``transformers``; it works on any model.
"""

from __future__ import annotations

import operator
from typing import Any, Iterator

import torch
from torch import fx, nn
from torch.fx.node import map_aggregate

#: attributes of a tensor proxy returned as their real value (constants, never recorded).
_CONSTANT_ATTRS = ("dtype", "device", "is_cuda", "requires_grad", "layout")


def _value(a: Any) -> Any:
    return a.value if isinstance(a, ValueProxy) else a


class ValueProxy(fx.Proxy):
    """An fx proxy that knows its value on the example inputs (``.value``)."""

    value: Any = None
    data_dependent = False  # computed from the values of an input (not only its sizes)

    def _concrete(self) -> Any:
        if self.data_dependent:
            raise fx.proxy.TraceError(f"ConcreteTracer: {self.node.name} depends on the input's values; "
                                      "control flow on it cannot be traced")
        return self.value

    def __getattr__(self, k: str) -> Any:
        if k in ("value", "node", "tracer") or k.startswith("__"):
            raise AttributeError(k)
        real = getattr(self.value, k)
        if k in _CONSTANT_ATTRS:
            return real
        if callable(real):
            return fx.proxy.Attribute(self, k)  # a method call: recorded as call_method
        return self.tracer.create_proxy("call_function", getattr, (self, k), {})

    def __bool__(self) -> bool:
        return bool(self._concrete())

    def __index__(self) -> int:
        return operator.index(self._concrete())

    def __int__(self) -> int:
        return int(self._concrete())

    def __float__(self) -> float:
        return float(self._concrete())

    def __len__(self) -> int:
        return len(self.value)

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self.value)))

    def __contains__(self, item: Any) -> bool:
        return _value(item) in self._concrete()


#: reads of a tensor that give its sizes, not its values.
_SIZE_METHODS = ("size", "dim", "numel")
_SIZE_ATTRS = ("shape", "ndim")


def _depends_on_data(kind: str, target: Any, args: Any, kwargs: Any) -> bool:
    """Whether a new node's value depends on the values of a model input (not only its sizes)."""
    if kind == "placeholder":
        return True
    if kind == "get_attr":
        return False  # a parameter or buffer: a constant of the model
    if (kind == "call_method" and target in _SIZE_METHODS) or (
            kind == "call_function" and target is getattr and args[1] in _SIZE_ATTRS):
        return False
    found: list[bool] = []
    map_aggregate((args, kwargs), lambda a: found.append(a.data_dependent) if isinstance(a, ValueProxy) else None)
    return any(found)


class ConcreteTracer(fx.Tracer):
    """An fx tracer whose proxies carry their value on ``example_inputs`` (see the module docstring).

    Use :meth:`trace_with` instead of ``trace``; subclasses choose leaves as usual.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._examples: list[Any] = []
        self._running = False  # True while an op runs on example values: module calls are plain calls
        # buffers as get_attr proxies: ``self.buf.expand(x.shape[0], -1)`` on a real tensor would
        # hand a proxy to torch's argument parser, which refuses it
        self.proxy_buffer_attributes = True

    def trace_with(self, root: nn.Module, example_inputs: tuple[Any, ...]) -> fx.Graph:
        """Trace ``root`` called on ``example_inputs`` (positional arguments of its forward)."""
        self._examples = list(example_inputs)
        with torch.no_grad():
            return self.trace(root)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return ValueProxy(node, self)

    def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any, name: str | None = None,
                     type_expr: Any = None, proxy_factory_fn: Any = None) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        if isinstance(proxy, ValueProxy):
            proxy.value = self._run(kind, target, map_aggregate(args, _value), map_aggregate(kwargs, _value))
            proxy.data_dependent = _depends_on_data(kind, target, args, kwargs)
        return proxy

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        if self._running:  # fx patches Module.__call__ while tracing; a value run is no trace
            return forward(*args, **kwargs)
        try:
            self.path_of_module(m)
        except NameError:  # a module outside the model (a library's kernel wrapper): traced through
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if self._running:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def _run(self, kind: str, target: Any, args: Any, kwargs: Any) -> Any:
        self._running = True
        try:
            return self._run_op(kind, target, args, kwargs)
        finally:
            self._running = False

    def _run_op(self, kind: str, target: Any, args: Any, kwargs: Any) -> Any:
        if kind == "placeholder":
            if not self._examples:
                raise TypeError(f"ConcreteTracer: no example input left for the argument {target!r}")
            return _copy(self._examples.pop(0))
        if kind == "get_attr":
            obj: Any = self.root
            for part in str(target).split("."):
                obj = getattr(obj, part)
            return _copy(obj)
        if kind == "call_module":
            return self.root.get_submodule(str(target))(*args, **kwargs)
        if kind == "call_method":
            return getattr(args[0], target)(*args[1:], **kwargs)
        if kind == "call_function":
            return target(*args, **kwargs)
        return None


def _copy(value: Any) -> Any:
    """A tensor's copy: an in-place op run on example values must not change the model or the inputs."""
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def concrete_trace(model: nn.Module, example_inputs: tuple[Any, ...],
                   tracer: ConcreteTracer | None = None) -> fx.GraphModule:
    """fx-trace ``model`` on ``example_inputs`` with :class:`ConcreteTracer` (or a subclass given).

    Tensor constants the tracer stores on the root are removed again, so ``model`` is unchanged.
    """
    tracer = tracer if tracer is not None else ConcreteTracer()
    before = set(vars(model))
    try:
        graph = tracer.trace_with(model, example_inputs)
        return fx.GraphModule(tracer.root, graph, type(model).__name__)
    finally:
        for key in set(vars(model)) - before:
            del model.__dict__[key]
