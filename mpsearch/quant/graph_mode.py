"""Graph mode of ``quantize``: trace the model with torch.fx and put one activation quantizer on
each tensor that a quantized layer reads, right where it is produced (see ``apply.py``).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from torch import fx, nn

from mpsearch.core.plan import LayerBits
from mpsearch.errors import ConfigError
from mpsearch.model.concrete import ConcreteTracer, concrete_trace
from mpsearch.model.kinds import is_quantizable
from mpsearch.quant.modules import INDEX_INPUT_TYPES, QUANT_LAYER_TYPES, ActQuant

log = logging.getLogger("mpsearch")

ACT_QUANT_DICT = "act_quant"  # name of the ModuleDict holding graph-mode quantizers


class _Tracer(fx.Tracer):
    """Keeps quantizable layers (user subclasses too) and quantized layers as single nodes."""

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return (is_quantizable(m) or isinstance(m, (ActQuant, *QUANT_LAYER_TYPES))
                or super().is_leaf_module(m, qualified_name))


class _ConcreteTracer(ConcreteTracer, _Tracer):
    """:class:`_Tracer` on example values: Python control flow on sizes takes the example's branch."""


def trace(model: nn.Module, example_inputs: tuple[Any, ...] | None = None) -> fx.GraphModule:
    """fx-trace ``model`` with quantizable and quantized layers kept as single nodes.

    Where plain symbolic tracing fails and ``example_inputs`` are given, the model is traced
    again on them with :class:`~mpsearch.model.concrete.ConcreteTracer` (control flow on sizes,
    as in ``transformers`` models, is fixed to the example's; see that module); the first error
    is raised when that fails too.
    """
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception:  # fx raises many types for untraceable code
        if example_inputs is None:
            raise
        try:
            return concrete_trace(model, tuple(example_inputs), _ConcreteTracer())
        except Exception as exc:
            log.debug("quantize: tracing on example values failed too: %s: %s", type(exc).__name__, exc)
        raise
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def check_called(root: fx.GraphModule, layers: Mapping[str, LayerBits]) -> None:
    """Every plan layer must be a module call in the trace (else its replacement would never run)."""
    called = {n.target for n in root.graph.nodes if n.op == "call_module"}
    for name in layers:
        if name not in called:
            raise ConfigError(f"quantize: plan layer {name!r} must be called as a module by the model's "
                              "forward, but the torch.fx trace never calls it")


def unique_key(holder: nn.ModuleDict, key: str) -> str:
    """``key``, with ``_`` appended until it names nothing in ``holder``."""
    while hasattr(holder, key) or key in holder:  # ModuleDict method names (keys, pop, ...) clash
        key += "_"
    return key


def _act_format(bits: LayerBits) -> tuple[int, bool]:
    """Order of input formats for the shared quantizer: more bits first, static before per-token."""
    return bits.a_bits, bits.a_mode == "static"


def insert_graph_quantizers(gm: fx.GraphModule, layers: Mapping[str, LayerBits],
                            make_aq: Callable[[LayerBits, str], ActQuant]) -> list[str]:
    """Insert one ActQuant per tensor read by a quantized layer (``apply.py``'s docstring says how).

    Weight-only layers (``a_bits == 16``) and embeddings read no quantizer. The shared
    quantizer of a tensor takes the widest input format of its readers (static before
    per-token at equal bits); a reader whose format differs re-quantizes through its own.

    Returns:
        The module paths of the inserted quantizers.
    """
    if hasattr(gm, ACT_QUANT_DICT):
        raise ConfigError(f"quantize: model must not already have an attribute {ACT_QUANT_DICT!r} "
                          "(is it already quantized?)")
    holder = nn.ModuleDict()
    gm.add_module(ACT_QUANT_DICT, holder)
    graph = gm.graph
    by_producer: dict[fx.Node, list[fx.Node]] = {}
    for node in graph.nodes:
        # an embedding reads integer indices: nothing to quantize on its input
        if (node.op == "call_module" and node.target in layers and not layers[node.target].weight_only
                and not isinstance(gm.get_submodule(str(node.target)), INDEX_INPUT_TYPES)):
            src = node.args[0] if node.args else node.kwargs.get("input")
            if isinstance(src, fx.Node):
                by_producer.setdefault(src, []).append(node)
            else:
                log.warning("quantize: input of %s is not a graph value; it is not quantized", node.target)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for src, readers in by_producer.items():
        bits = max((layers[n.target] for n in readers), key=_act_format)
        key = unique_key(holder, src.name)
        shared = make_aq(bits, src.name)
        holder[key] = shared
        anchor = placeholders[-1] if src.op == "placeholder" else src  # placeholders stay first
        with graph.inserting_after(anchor):
            aq_node = graph.call_module(f"{ACT_QUANT_DICT}.{key}", (src,))
        src.replace_all_uses_with(aq_node, delete_user_cb=lambda user: user is not aq_node)
        for node in readers:
            target = str(node.target)
            layer = gm.get_submodule(target)
            name, quantizer = f"{ACT_QUANT_DICT}.{key}", shared
            if _act_format(layers[target]) != _act_format(bits):
                rkey = unique_key(holder, f"{key}__{target.replace('.', '_')}")
                quantizer = make_aq(layers[target], src.name)
                holder[rkey] = quantizer
                with graph.inserting_before(node):
                    r_node = graph.call_module(f"{ACT_QUANT_DICT}.{rkey}", (aq_node,))
                node.replace_input_with(aq_node, r_node)
                name = f"{ACT_QUANT_DICT}.{rkey}"
            if layer.input_quant_name and layer.input_quant_name != name:
                log.warning("quantize: %s is called on several tensors; input_quant_name keeps the first (%s)",
                            target, layer.input_quant_name)
            else:
                layer.input_quant_name = name
            quantizer.consumers.append(target)
    graph.lint()
    gm.recompile()
    return [f"{ACT_QUANT_DICT}.{k}" for k in holder]
