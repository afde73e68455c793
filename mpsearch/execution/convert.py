"""``to_integer``: turn a fake-quant model (from :func:`mpsearch.quant.quantize`) into an integer program.

Each node of the fx graph is converted by the handler registered for it (:mod:`.ops`); the
result is an :class:`~.program.IntegerModel` whose kernels come from :mod:`.kernels`. How the
fake-quant graph maps to integers (one rounding where the simulation has one):

* the activation quantizer on the model input is the float -> int boundary (:class:`~.ir.InputQuant`);
* a quantized conv / linear reads int8 codes and produces an int32 accumulator at scale
  ``S_w[c] * S_a`` (BatchNorm was folded into it by ``quantize``; bias rounded to that scale);
* ReLU / ReLU6 / clamps are kept as pending real-valued clamps and folded into the next
  rescale as integer bounds (exact, rounding is monotone), or applied as an integer clamp
  where a sum comes first (avgpool, add);
* max pooling and reshapes act on the integers directly (they commute with the affine map);
* average pooling is a window SUM; the 1/N goes into the scale of the value, so the next
  rescale divides by N with the same single rounding;
* a residual add rescales both operands to the finer of their scales (int32) and adds;
* every activation quantizer becomes one dyadic rescale ``(x * m + 2^(s-1)) >> s`` straight to
  its scale and zero point;
* the graph output (float logits in the simulation) stays an int32 accumulator; a per-channel
  scale is rescaled to one per-tensor scale so that ``argmax`` of the integers is the argmax.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from mpsearch.errors import UnsupportedModelError, rule_error
from mpsearch.execution import ir
from mpsearch.execution.dyadic import ROUNDINGS
from mpsearch.execution.ops import (FUNCTION_HANDLERS, METHOD_HANDLERS, MODULE_HANDLERS, Builder, Context, Rep,
                                    describe, handler_for)
from mpsearch.execution.ops._builder import INT32_MAX, INT32_MIN, is_scalar
from mpsearch.execution.ops.islands import float_only
from mpsearch.execution.program import IntegerModel
from mpsearch.quant.apply_methods import check_integer_methods

log = logging.getLogger("mpsearch")


@dataclass(frozen=True)
class IntegerConfig:
    """Options of :func:`to_integer`.

    Attributes:
        rounding: rounding of every dyadic rescale: "half_up" (add ``2^(s-1)``, shift; docs/architecture.md)
            or "half_even" (the simulation's ``torch.round``; differs only on exact ties, which
            power-of-two scales make common).

        integer_only: True (default): every op runs in integer arithmetic; transformer ops run
            their integer versions (embedding lookup, I-BERT LayerNorm / GELU / SiLU / softmax, integer
            attention, activation matmul / mul; :mod:`.ops.integer_versions`) and an op with none
            (tanh, ...) is refused, named, before anything is computed. False: every such op runs
            as a declared float island (dequantize, the float op, requantize at the next
            activation quantizer: the simulation's arithmetic), listed by
            :attr:`IntegerModel.float_ops` and by ``validate``. :meth:`for_profile` reads it from
            a profile's ``capabilities.integer_only``.
    """

    rounding: str = "half_up"
    integer_only: bool = True

    def __post_init__(self) -> None:
        if self.rounding not in ROUNDINGS:
            raise rule_error("IntegerConfig", "rounding", f"one of {', '.join(ROUNDINGS)}", self.rounding)
        if not isinstance(self.integer_only, bool):
            raise rule_error("IntegerConfig", "integer_only", "True or False", self.integer_only)

    @classmethod
    def for_profile(cls, profile: Any, rounding: str = "half_up") -> "IntegerConfig":
        """The config a hardware profile asks for: ``integer_only`` from its capabilities."""
        return cls(rounding=rounding, integer_only=bool(profile.capabilities.integer_only))


class _ShapeRecorder(fx.Interpreter):
    """Runs the graph once and stores each tensor node's shape in ``node.meta["tensor_meta"]``.

    (``torch.fx.passes.shape_prop.ShapeProp`` does the same but imports sympy, about a second.)
    """

    def __init__(self, gm: fx.GraphModule, static: set[fx.Node]) -> None:
        super().__init__(gm)
        self.static = static
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            n.meta["tensor_meta"] = _Meta(tuple(out.shape))
            if out.is_floating_point() and out.numel():  # the range an integer-only product calibrates to
                n.meta["abs_max"] = float(out.detach().abs().max())
        if n in self.static:
            self.values[n] = out.detach().clone() if isinstance(out, torch.Tensor) else out
        return out


@dataclass(frozen=True)
class _Meta:
    shape: tuple[int, ...]


#: ``getattr(x, name)`` of these reads no tensor value: a size, known when the program is built.
_META_ATTRS = ("shape", "dtype", "device", "ndim")


def static_nodes(gm: fx.GraphModule) -> set[fx.Node]:
    """The nodes computed once when the program is built: parameters and buffers (``get_attr``),
    sizes (``x.shape``, ``x.size()``, ``x.dim()``), every function of those alone (e.g.
    ``self.pos[:x.shape[1]]``) and embedding lookups at such indices (``pos_emb(arange(T))``). Their values assume the example input's sizes except the batch."""
    static: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            static.add(node)
        elif node.op == "call_function" and node.target is getattr and node.args[1] in _META_ATTRS:
            static.add(node)
        elif node.op == "call_method" and node.target in ("size", "dim"):
            static.add(node)
        elif node.op in ("call_function", "call_method") or (
                # an embedding looked up at indices known when the program is built (learned
                # positions at torch.arange(T)) is a constant: the simulation's own lookup
                node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), nn.Embedding)):
            deps = node.all_input_nodes
            if deps and all(d in static for d in deps):
                static.add(node)
    return static


def check_supported(gm: fx.GraphModule, integer_only: bool = True) -> None:
    """Raise :class:`UnsupportedModelError` naming the first op the executor cannot run.

    With ``integer_only`` an op that could only run as a float island is refused too. Runs on
    the graph only (nothing is computed), so a bad model fails before any work.
    """
    static = static_nodes(gm)
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output") or node in static:
            continue
        found = handler_for(node, gm)
        why = float_only(*found) if found is not None and integer_only else None
        if why is not None:
            raise UnsupportedModelError(
                f"to_integer: op {describe(node, gm)} at node {node.name!r} is not supported by the integer executor "
                f"in integer-only mode (IntegerConfig(integer_only=True), the default): {why} "
                "and it could only run as a declared float island; pass IntegerConfig(integer_only=False), or "
                "to_integer(..., profile=p) with a profile whose capabilities.integer_only is false, to run it "
                "in float")
        if found is not None:
            if node.op == "call_module":
                module = gm.get_submodule(str(node.target))
                mode = getattr(module, "mode", "quantize")
                per_token = getattr(getattr(module, "spec", None), "granularity", "") == "per_token"  # w8a8t: ops.per_token
                if type(module).__name__ == "ActQuant" and mode != "quantize" and not per_token:
                    raise UnsupportedModelError(
                        f"to_integer: node {node.name!r} ({describe(node, gm)}) is in mode {mode!r}; the integer "
                        "executor needs frozen static activation ranges (calibrate with activation_range='static')")
            continue
        what = describe(node, gm)
        hint = ""
        if node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)),
                                                   (nn.Conv1d, nn.Conv2d, nn.Linear)):
            hint = " (the layer is not quantized: it is missing from the plan; every conv/linear must be quantized)"
        elif node.op == "call_module" and "BatchNorm" in what:
            hint = " (a BatchNorm that could not be folded into a conv before it)"
        elif node.op == "get_attr":
            hint = " (a constant tensor read inside forward)"
        valid = sorted({c.__name__ for c, _ in MODULE_HANDLERS}
                       | {getattr(f, "__name__", str(f)) for f in FUNCTION_HANDLERS} | set(METHOD_HANDLERS))
        raise UnsupportedModelError(
            f"to_integer: op {what} at node {node.name!r} is not supported by the integer executor{hint}. "
            f"Supported: {', '.join(valid)}")


def _output(ctx: Context, node: fx.Node) -> ir.OutputSpec:
    arg = node.args[0]
    if isinstance(arg, (tuple, list)):
        if len(arg) != 1:
            raise UnsupportedModelError(f"to_integer: the model must return one tensor, but returns {len(arg)}")
        arg = arg[0]
    rep: Rep = ctx.rep(arg, node)
    if rep.dtype == "float32":  # a float island's value: the logits are float already
        return ir.OutputSpec(name=rep.value, scale=1.0, zero_point=0, sample_shape=rep.shape)
    rep = ctx.b.materialize(rep, "output")
    if not (is_scalar(rep.scale) and is_scalar(rep.zp)):
        # Per-channel logits (S_w[c] * S_a): one per-tensor scale so the integers compare directly.
        (rep,) = ctx.b.common_scale([rep], "output")
    return ir.OutputSpec(name=rep.value, scale=float(rep.scale), zero_point=int(rep.zp), sample_shape=rep.shape)


def to_integer(qmodel: nn.Module, example_inputs: Any, config: IntegerConfig | None = None, *,
               profile: Any = None) -> IntegerModel:
    """Build the integer-only program of a fake-quant model.

    Args:
        qmodel: the result of :func:`mpsearch.quant.quantize` in graph mode (an
            ``fx.GraphModule`` with calibrated activation quantizers).
        example_inputs: a tensor or a tuple of tensors (one batch), used for shapes only.
        config: options (:class:`IntegerConfig`); default: ``IntegerConfig.for_profile(profile)``
            when a profile is given, else ``IntegerConfig()`` (integer-only).
        profile: the :class:`~mpsearch.core.HardwareProfile` the plan is for (optional).

    Returns:
        The :class:`~mpsearch.execution.program.IntegerModel` (on the device of the example inputs).

    Raises:
        UnsupportedModelError: ``qmodel`` is not a graph-mode fake-quant model, or an op in it is not
            supported (named with its node and module), or, in integer-only mode, has no integer
            version; checked before anything is computed.
    """
    if config is None:
        config = IntegerConfig() if profile is None else IntegerConfig.for_profile(profile)
    if not isinstance(config, IntegerConfig):
        raise rule_error("to_integer", "config", "an IntegerConfig or None", config)
    if not isinstance(qmodel, fx.GraphModule):
        mode = getattr(qmodel, "quant_mode", None)
        why = ("it was quantized in per-layer mode because torch.fx could not trace it (a model whose forward "
               "takes keyword options or returns a structure, as transformers models do, traces after "
               "mpsearch.model.with_call(model, ('input_ids',), use_cache=False, return_dict=False))"
               if mode == "per_layer"
               else f"it is a {type(qmodel).__name__}, not the fx.GraphModule that mpsearch.quantize returns")
        raise UnsupportedModelError(f"to_integer: qmodel must be a graph-mode fake-quant model, but {why}")
    check_supported(qmodel, config.integer_only)
    check_integer_methods(qmodel)  # a float-codebook weight method has no integer form (quant/apply_methods.py)
    if not isinstance(example_inputs, (torch.Tensor, tuple, list)):
        raise rule_error("to_integer", "example_inputs", "a tensor or a tuple of tensors", type(example_inputs))
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise rule_error("to_integer", "example_inputs", "a tensor or a tuple of tensors", type(example_inputs))
    was_training = qmodel.training
    qmodel.eval()
    static = static_nodes(qmodel)
    recorder = _ShapeRecorder(qmodel, static)
    with torch.no_grad():
        recorder.run(*inputs)  # per-node shapes and static values; the only float run, at build time
    qmodel.train(was_training)

    ctx = Context(qmodel, Builder(config.rounding))
    ctx.integer_only = config.integer_only
    ctx.static = recorder.values
    output: ir.OutputSpec | None = None
    for node in qmodel.graph.nodes:
        if node.op == "placeholder":
            ctx.reps[node] = Rep(value=node.name, dtype="float", shape=(), scale=np.float64(1), zp=np.int64(0),
                                 lo=np.int64(0), hi=np.int64(0))
        elif node.op == "output":
            output = _output(ctx, node)
        elif node in static:
            ctx.reps[node] = Rep(value="", dtype="shape", shape=(), scale=np.float64(1), zp=np.int64(0),
                                 lo=np.int64(0), hi=np.int64(0))
        else:
            found = handler_for(node, qmodel)
            assert found is not None  # check_supported ran
            fn, module = found
            ctx.reps[node] = fn(ctx, node, module) if module is not None else fn(ctx, node)
    assert output is not None
    used = {name for op in ctx.b.ops for name in op.inputs} | {output.name}
    for inp in ctx.inputs:
        if inp.name not in used:
            log.warning("to_integer: model input %s is quantized but never used", inp.source)
    meta = {"rounding": config.rounding, "int32_range": [INT32_MIN, INT32_MAX],
            "layers": dict(ctx.layers)}
    device = inputs[0].device
    return IntegerModel(tuple(ctx.inputs), tuple(ctx.b.ops), output, dict(ctx.taps), meta).to(device)

