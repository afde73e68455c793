"""``export_onnx``: a fake-quant model -> an ONNX QDQ model whose quantization is the plan's.

How the ONNX graph is made, and why not ``torch.onnx.export``: the graph is translated node by
node from the fake-quant model's own fx graph (the one ``to_integer`` reads), with one handler
per module, function and method (:mod:`.ops_modules`, :mod:`.ops_functions`). Every activation
quantizer becomes one (Clip) -> QuantizeLinear -> DequantizeLinear with its frozen scale and zero
point; every quantized weight is stored as integer codes (the simulation's, bit for bit) behind a
DequantizeLinear; everything else (LayerNorm, GELU, softmax, attention, residual adds) is the
float op the simulation runs. torch's exporter would need the fake-quant autograd functions
rewritten into ``torch.fake_quantize_*`` ops (8-bit types only, no int4, no blocked scales) and
leaves the choice of Q/DQ placement and types to it; here each is chosen, and an op without an
ONNX form is refused by name before anything is written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import fx, nn

from mpsearch.core.checks import check_choice, check_int
from mpsearch.core.io import write_bytes_atomic
from mpsearch.errors import UnsupportedModelError, rule_error
from mpsearch.execution.export import onnx_proto
from mpsearch.execution.export._context import Context, Recorder, static_nodes
from mpsearch.execution.export._graph import GraphBuilder
from mpsearch.execution.export.ops_functions import FUNCTION_HANDLERS, METHOD_HANDLERS
from mpsearch.execution.export.ops_modules import MODULE_HANDLERS, module_handler
from mpsearch.execution.export.qdq import OPSET_MIN

DEFAULT_OPSET = 21
MAX_OPSET = 23  # onnxruntime 1.18..1.22 runs up to 21..23; later opsets are refused here, not at load time
LOW_BITS = ("int4", "int8")
BIAS = ("int32", "float")
OUTPUT_NAME = "output"


@dataclass(frozen=True)
class ExportConfig:
    """Options of :func:`export_onnx`.

    Attributes:
        opset: ONNX opset of the default domain, 13..23. 21 (default) is the first with int4 /
            uint4 / int16 types and blocked DequantizeLinear (per-group weights).
        low_bits: "int4": 2..4-bit tensors as int4 / uint4 (needs opset >= 21); "int8": as
            int8 / uint8 holding the narrow codes (any opset; the metadata says so).
        bias: "int32": the bias of a layer with a per-tensor quantized input as int32 codes at
            ``S_x S_w`` (the standard QDQ form; ONNX Runtime fuses integer kernels); "float":
            float biases, as the simulation adds them.
    """

    opset: int = DEFAULT_OPSET
    low_bits: str = "int4"
    bias: str = "int32"

    def __post_init__(self) -> None:
        check_int(self.opset, "ExportConfig", "opset", min=OPSET_MIN, max=MAX_OPSET)
        check_choice(self.low_bits, "ExportConfig", "low_bits", LOW_BITS)
        check_choice(self.bias, "ExportConfig", "bias", BIAS)


def check_exportable(gm: fx.GraphModule) -> None:
    """Raise UnsupportedModelError naming the first node whose op has no ONNX form (nothing is built)."""
    static = static_nodes(gm)
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output") or node in static:
            continue
        if node.op == "call_module":
            module = gm.get_submodule(str(node.target))
            ok, what = module_handler(module) is not None, f"module {node.target!r} ({type(module).__name__})"
        elif node.op == "call_function":
            ok = node.target in FUNCTION_HANDLERS
            what = f"function {getattr(node.target, '__module__', '')}.{getattr(node.target, '__name__', node.target)}"
        elif node.op == "call_method":
            ok, what = node.target in METHOD_HANDLERS, f"method .{node.target}()"
        else:
            ok, what = False, f"{node.op} {node.target!r}"
        if not ok:
            supported = sorted({c.__name__ for c, _ in MODULE_HANDLERS}
                               | {getattr(f, "__name__", str(f)) for f in FUNCTION_HANDLERS}
                               | {f".{m}()" for m in METHOD_HANDLERS})
            raise UnsupportedModelError(f"export_onnx: op {what} at node {node.name!r} has no ONNX QDQ form in "
                                        f"mpsearch's exporter. Supported: {', '.join(supported)}")


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, or ConfigError when it is a directory or its folder is missing."""
    out = Path(path)
    if out.is_dir():
        raise rule_error("export_onnx", "path", "a file path (not an existing directory)", str(path))
    if not out.parent.exists() and str(out.parent) not in ("", "."):
        raise rule_error("export_onnx", "path", "a path whose folder exists", str(path))
    return out


def _batched(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The inputs with one more example (the first repeated): the second run that finds the batch size."""
    return tuple(torch.cat([t, t[:1]]) for t in inputs)


def _plan_dict(qmodel: nn.Module, plan: Any) -> dict[str, Any]:
    if plan is not None:
        return plan.to_dict() if hasattr(plan, "to_dict") else dict(plan)
    from mpsearch.quant.modules import QUANT_LAYER_TYPES

    return {"layers": {name: {"w_bits": m.w_bits, "a_bits": int(m.a_bits)} for name, m in qmodel.named_modules()
                       if isinstance(m, QUANT_LAYER_TYPES)}}


def build_onnx(qmodel: nn.Module, example_inputs: Any, config: ExportConfig | None = None, *, plan: Any = None,
               budgets: Mapping[str, Any] | None = None) -> tuple[Any, Context]:
    """The checked ONNX ``ModelProto`` of ``qmodel`` and the export's context (nothing written).

    Arguments as :func:`export_onnx`.
    """
    config = ExportConfig() if config is None else config
    if not isinstance(config, ExportConfig):
        raise rule_error("export_onnx", "config", "an ExportConfig or None", config)
    if not isinstance(qmodel, fx.GraphModule):
        raise UnsupportedModelError(f"export_onnx: qmodel must be the fx.GraphModule that mpsearch.quantize returns "
                                    f"(graph mode), but got a {type(qmodel).__name__}")
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if not inputs or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in inputs):
        raise rule_error("export_onnx", "example_inputs", "a tensor or a tuple of tensors with a batch dimension",
                         type(example_inputs).__name__)
    check_exportable(qmodel)
    onnx_proto.require_onnx()
    was_training = qmodel.training
    qmodel.eval()
    runs = []
    device = next((p.device for p in qmodel.parameters()), torch.device("cpu"))  # the model is not moved
    with torch.no_grad():
        for batch in (inputs, _batched(inputs)):
            rec = Recorder(qmodel)
            rec.run(*(t.to(device) for t in batch))
            runs.append({n: v.cpu() if isinstance(v, torch.Tensor) else v for n, v in rec.values.items()})
    qmodel.train(was_training)
    ctx = Context(qmodel, GraphBuilder(), config.opset, config.low_bits, config.bias, runs[0], runs[1],
                  static_nodes(qmodel))
    placeholders = [n for n in qmodel.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(inputs):
        raise rule_error("export_onnx", "example_inputs", f"{len(placeholders)} tensors (one per forward argument)",
                         len(inputs))
    for node, t in zip(placeholders, inputs):
        elem = "float32" if t.is_floating_point() else "int64"
        ctx.names[node] = ctx.g.add_input(node.name, elem, ("batch", *t.shape[1:]))
        if elem == "int64" and t.dtype != torch.int64:
            raise rule_error("export_onnx", f"example_inputs ({node.name})", "float or int64", str(t.dtype))
    for node in qmodel.graph.nodes:
        if node.op == "placeholder" or node in ctx.static:
            continue
        if node.op == "output":
            out = node.args[0]
            out = out[0] if isinstance(out, (tuple, list)) and len(out) == 1 else out
            if not isinstance(out, fx.Node) or out not in ctx.names:
                raise UnsupportedModelError("export_onnx: the model must return one tensor computed from its inputs")
            ctx.g.add_output(ctx.names[out], OUTPUT_NAME, "float32", ("batch", *ctx.shape(out)[1:]))
            continue
        if node.op == "call_module":
            module = qmodel.get_submodule(str(node.target))
            ctx.names[node] = module_handler(module)(ctx, node, module)  # type: ignore[misc]
        elif node.op == "call_function":
            ctx.names[node] = FUNCTION_HANDLERS[node.target](ctx, node)
        else:
            ctx.names[node] = METHOD_HANDLERS[str(node.target)](ctx, node)
    meta = metadata(qmodel, config, ctx, plan, budgets)
    model = onnx_proto.to_model(ctx.g, config.opset, meta)
    onnx_proto.check(model)
    return model, ctx


def metadata(qmodel: nn.Module, config: ExportConfig, ctx: Context, plan: Any,
             budgets: Mapping[str, Any] | None) -> dict[str, str]:
    """metadata_props: plan, budgets, version, and how every quantized tensor is stored."""
    from mpsearch import __version__

    plan_d = _plan_dict(qmodel, plan)
    if budgets is None:
        budgets = (plan_d.get("meta") or {}).get("budgets")
    narrow = sorted({r.storage for r in ctx.records if r.bits < 8 and r.storage in ("int8", "uint8")})
    return {
        "mpsearch.version": __version__,
        "mpsearch.plan": json.dumps(plan_d, sort_keys=True, default=str),
        "mpsearch.budgets": json.dumps(budgets, sort_keys=True, default=str),
        "mpsearch.opset": str(config.opset),
        "mpsearch.low_bits": config.low_bits,
        "mpsearch.low_bits_storage": (f"codes of fewer than 8 bits held in {', '.join(narrow)} (values within "
                                      "each tensor's bits; see mpsearch.tensors)" if narrow else "native"),
        "mpsearch.bias": config.bias,
        "mpsearch.tensors": json.dumps({r.name: r.to_dict() for r in ctx.records}, sort_keys=True),
    }


def export_onnx(qmodel: nn.Module, example_inputs: Any, path: str | os.PathLike[str], *,
                opset: int = DEFAULT_OPSET, low_bits: str = "int4", bias: str = "int32", plan: Any = None,
                budgets: Mapping[str, Any] | None = None) -> Path:
    """Write ``qmodel`` as an ONNX QDQ model with the plan's scales, zero points and bit-widths.

    Args:
        qmodel: a graph-mode fake-quant model (:func:`mpsearch.quantize`) with static activation ranges.
        example_inputs: a tensor or tuple of tensors (one batch; dimension 0 is the batch, left
            free in the ONNX model; other sizes, such as a sequence length, are fixed).
        path: the ``.onnx`` file to write (its folder must exist; not a directory).
        opset, low_bits, bias: see :class:`ExportConfig`.
        plan: the :class:`~mpsearch.core.BitPlan` (stored in the metadata; default: each
            quantized layer's bits read from the model).
        budgets: the budgets the plan was chosen under (default: ``plan.meta["budgets"]``).

    Returns:
        The written path. Its metadata_props hold ``mpsearch.plan``, ``mpsearch.budgets``,
        ``mpsearch.version`` and ``mpsearch.tensors`` (bits and storage type per tensor).

    Raises:
        UnsupportedModelError: an op with no ONNX form (named with its node), a dynamic or
            per-token activation range, or an opset too old for a tensor's type (opset and rule
            named); all before anything is written.
        ConfigError: a bad option, or ``path`` is a directory.
    """
    config = ExportConfig(opset=opset, low_bits=low_bits, bias=bias)
    out = check_output_path(path)
    model, _ = build_onnx(qmodel, example_inputs, config, plan=plan, budgets=budgets)
    write_bytes_atomic(out, onnx_proto.serialize(model))
    return out
