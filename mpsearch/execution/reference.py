"""PyTorch's own int8 kernels as a reference for W8A8 (``torch.ao.quantization``, deprecated but present).

:func:`torch_int8_reference` runs the graph of a fake-quant model with ``torch.ao`` quantized
modules and ops, using the integers and scales of the fake-quant model: the same int8 weight
codes (per channel), the same activation scales and zero points (int8 codes ``q`` become quint8
codes ``q + 128``), each conv / linear / residual add quantizing its output at the scale of the
activation quantizer it reaches (through ReLU, ReLU6, max pooling, flatten), a ReLU right after
it fused (``ConvReLU2d``, ``LinearReLU``, ``quantized::add_relu``). The last layer's output is
quantized at ``logit_scale`` / ``logit_zero_point``.

Where torch.ao must differ: its quantized conv, linear and add always produce 8-bit codes, while
the fake-quant model (and the integer executor) keep a layer's output at accumulator precision
when it flows into a residual add, and a sum at full precision when it flows into a pooling. At
those points the reference quantizes to 8 bits with the parameters torch.ao's own ``MinMaxObserver``
computes on ``calib_batches`` -- the extra rounding a torch.ao deployment of the model has.
:func:`quantize_branches` inserts activation quantizers with exactly those parameters into a copy
of the fake-quant model, so that both sides compute the same quantized model. Average pooling is
computed on the dequantized input and quantized once by the activation quantizer that follows (as
in the fake-quant model); torch.ao's quantized pooling would round the mean to its input's scale
first.
"""

from __future__ import annotations

import copy
import operator
import warnings
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from mpsearch.errors import UnsupportedModelError
from mpsearch.quant.modules import ActQuant, QuantConv2d, QuantLinear
from mpsearch.quant.quantizer import quantize as quantize_codes

#: modules a value passes through on its way to the activation quantizer that fixes its scale
_PASS = (nn.ReLU, nn.Hardtanh, nn.MaxPool2d, nn.Flatten, nn.Identity, nn.Dropout)
_ADDS = (operator.add, operator.iadd, torch.add)
_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)


def torch_ao_available() -> str | None:
    """The quantized engine to use ("qnnpack", "x86", "fbgemm", "onednn"), or None if none is present."""
    try:
        import torch.ao.nn.quantized  # noqa: F401
    except ImportError:
        return None
    engines = list(torch.backends.quantized.supported_engines)
    for name in ("qnnpack", "onednn", "x86", "fbgemm"):
        if name in engines:
            return name
    return None


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(str(node.target)) if node.op == "call_module" else None


def _is_layer_or_add(gm: fx.GraphModule, node: fx.Node) -> bool:
    return isinstance(_module(gm, node), (QuantConv2d, QuantLinear)) or (
        node.op == "call_function" and node.target in _ADDS)


def _reaches(gm: fx.GraphModule, node: fx.Node) -> ActQuant | str | None:
    """The activation quantizer ``node``'s value reaches through single-user pass-through modules,
    "output" for the graph output, or None (another op reads it first)."""
    while len(node.users) == 1:
        (node,) = node.users
        if node.op == "output":
            return "output"
        m = _module(gm, node)
        if isinstance(m, ActQuant):
            return m
        if not isinstance(m, _PASS):
            return None
    return None


def _relu_after(gm: fx.GraphModule, node: fx.Node) -> fx.Node | None:
    """The ReLU that reads ``node`` (through identities, e.g. a folded BatchNorm) and is the only
    reader on the way, if any: torch.ao fuses it into the op."""
    while len(node.users) == 1:
        (node,) = node.users
        m = _module(gm, node)
        if type(m) is nn.ReLU:
            return node
        if not isinstance(m, (nn.Identity, nn.Dropout)):
            return None
    return None


def _observed_qparams(qmodel: fx.GraphModule, calib_batches: Iterable[Any] | None) -> dict[str, tuple[float, int, str]]:
    """Layer / add node name -> (scale, quint8 zero point, name of the node whose value is quantized)
    for every layer or add whose output torch.ao must quantize but the fake-quant model does not:
    ``MinMaxObserver(quint8)`` over the float values of that node (after its ReLU) on the batches."""
    from torch.ao.quantization.observer import MinMaxObserver

    targets: dict[str, str] = {}
    for node in qmodel.graph.nodes:
        if _is_layer_or_add(qmodel, node) and _reaches(qmodel, node) is None:
            targets[node.name] = (_relu_after(qmodel, node) or node).name
    if not targets:
        return {}
    if calib_batches is None:
        raise UnsupportedModelError("torch_int8_reference: torch.ao quantizes the outputs of "
                                    f"{', '.join(sorted(targets))} to 8 bits where the fake-quant model does not; "
                                    "calib_batches must be given to choose their scales")
    observers = {name: MinMaxObserver(dtype=torch.quint8) for name in set(targets.values())}

    class _Observe(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            out = super().run_node(n)
            if n.name in observers:
                observers[n.name](out.detach().float())
            return out

    was_training = qmodel.training
    qmodel.eval()
    with torch.no_grad():
        for batch in calib_batches:
            _Observe(qmodel).run(batch[0] if isinstance(batch, (tuple, list)) else batch)
    qmodel.train(was_training)
    out = {}
    for node, target in targets.items():
        scale, zp = observers[target].calculate_qparams()
        out[node] = (float(scale), int(zp), target)
    return out


def quantize_branches(qmodel: fx.GraphModule, calib_batches: Iterable[Any]) -> fx.GraphModule:
    """A copy of ``qmodel`` with an 8-bit activation quantizer wherever :func:`torch_int8_reference`
    quantizes a value the fake-quant model keeps at full precision (a layer output flowing into a
    residual add, a sum flowing into a pooling), with the parameters the reference uses there.

    Raises:
        UnsupportedModelError: the model has no 8-bit per-tensor activation quantizer to copy.
    """
    spec = next((m.spec for m in qmodel.modules() if isinstance(m, ActQuant) and m.spec.bits == 8
                 and m.spec.granularity == "per_tensor" and m.spec.signed), None)
    if spec is None:
        raise UnsupportedModelError("quantize_branches: needs an 8-bit signed per-tensor activation quantizer")
    qparams = _observed_qparams(qmodel, calib_batches)
    out = copy.deepcopy(qmodel)
    nodes = {n.name: n for n in out.graph.nodes}
    for _, (scale, zp, target) in sorted(qparams.items()):
        node = nodes[target]
        aq = ActQuant(spec, mode="observe", source=target)
        aq.set_qparams(torch.tensor(scale), torch.tensor(zp - 128))  # int8 codes = quint8 codes - 128
        name = f"act_quant.ref_{target}"
        out.add_submodule(name, aq)
        with out.graph.inserting_after(node):
            new = out.graph.call_module(name, (node,))
        node.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)
    out.graph.lint()
    out.recompile()
    return out


def _qweight(m: nn.Module) -> Tensor:
    wq = m.weight_quant
    codes = quantize_codes(m.weight.detach().float(), wq.scale, wq.zero_point, wq.spec).to(torch.int8)
    scale = wq.scale.double().reshape(-1).expand(codes.shape[0]).contiguous()
    return torch._make_per_channel_quantized_tensor(codes, scale, torch.zeros(codes.shape[0], dtype=torch.long), 0)


def _act_qparams(aq: ActQuant) -> tuple[float, int]:
    if aq.spec.bits != 8 or aq.spec.granularity != "per_tensor":
        raise UnsupportedModelError("torch_int8_reference: needs 8-bit per-tensor activations")
    return float(aq.scale), int(aq.zero_point) + (128 if aq.spec.signed else 0)


def torch_int8_reference(qmodel: fx.GraphModule, logit_scale: float, logit_zero_point: int,
                         calib_batches: Iterable[Any] | None = None) -> Callable[[Tensor], Tensor]:
    """A function float input -> quint8 logits computed by PyTorch's int8 kernels.

    Args:
        qmodel: a W8A8 fake-quant model (``mpsearch.quantize`` in graph mode).
        logit_scale / logit_zero_point: the quint8 grid of the output.
        calib_batches: batches (or ``(x, y)`` pairs) to observe the values torch.ao must quantize
            and the fake-quant model does not (see the module docstring); needed for residual graphs.

    Raises:
        UnsupportedModelError: an op without a torch.ao counterpart here, not W8A8, or a residual
            graph without ``calib_batches``.
    """
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    with warnings.catch_warnings():  # torch.ao's quantized tensors are deprecated: we know
        warnings.simplefilter("ignore", UserWarning)
        observed = _observed_qparams(qmodel, calib_batches)
        steps = _build(qmodel, (logit_scale, logit_zero_point), observed, nniq, nnq)

    def run(x: Tensor) -> Tensor:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            env: dict[str, Any] = {}
            for name, fn, args in steps:
                env[name] = fn(*(env[a] if isinstance(a, str) else x for a in args))
            return env["output"]

    return run


Step = tuple[str, Callable[..., Any], tuple[Any, ...]]


def _build(gm: fx.GraphModule, logits: tuple[float, int], observed: dict[str, tuple[float, int, str]], nniq: Any,
           nnq: Any) -> list[Step]:
    """The reference as a list of ``(value name, function, input value names)`` (``None``: the input)."""
    steps: list[Step] = []
    fused_relu: set[fx.Node] = set()

    def out_qparams(node: fx.Node) -> tuple[float, int]:
        reached = _reaches(gm, node)
        if isinstance(reached, ActQuant):
            return _act_qparams(reached)
        if reached == "output":
            return logits
        scale, zp, _ = observed[node.name]
        return scale, zp

    for node in gm.graph.nodes:
        args = tuple(a.name for a in node.args if isinstance(a, fx.Node))
        m = _module(gm, node)
        if node.op == "placeholder":
            steps.append((node.name, lambda x: x, (None,)))
        elif node.op == "output":
            steps.append(("output", _as_logits(logits), args[:1]))
        elif isinstance(m, ActQuant):
            steps.append((node.name, _requantize(*_act_qparams(m)), args))
        elif isinstance(m, (QuantConv2d, QuantLinear)) or (node.op == "call_function" and node.target in _ADDS):
            if isinstance(m, (QuantConv2d, QuantLinear)) and m.w_bits != 8:
                raise UnsupportedModelError("torch_int8_reference: needs 8-bit weights")
            scale, zp = out_qparams(node)
            relu = _relu_after(gm, node)
            if relu is not None:
                fused_relu.add(relu)
            steps.append((node.name, _layer(m, scale, zp, relu is not None, nniq, nnq), args))
        elif isinstance(m, nn.ReLU):
            steps.append((node.name, (lambda x: x) if node in fused_relu else torch.relu, args))
        elif isinstance(m, nn.Hardtanh):  # ReLU6. contiguous(): torch 2.13's quantized clamp kernels
            # return a channels-last input's bytes under contiguous strides (measured), scrambling it
            steps.append((node.name, lambda x, m=m: F.hardtanh(x.contiguous(), m.min_val, m.max_val), args))
        elif isinstance(m, nn.MaxPool2d):
            steps.append((node.name, lambda x, m=m: F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation,
                                                                 m.ceil_mode), args))
        elif isinstance(m, _POOLS):  # in float, quantized once by the activation quantizer after it
            steps.append((node.name, lambda x, m=m: m(x.dequantize() if x.is_quantized else x), args))
        elif isinstance(m, nn.Flatten):
            steps.append((node.name, lambda x, m=m: torch.flatten(x, m.start_dim, m.end_dim), args))
        elif isinstance(m, (nn.Identity, nn.Dropout)):
            steps.append((node.name, lambda x: x, args))
        else:
            what = f"module {node.target} ({type(m).__name__})" if m is not None else f"{node.op} {node.target}"
            raise UnsupportedModelError(f"torch_int8_reference: {what} is not supported")
    return steps


def _layer(m: nn.Module | None, scale: float, zp: int, relu: bool, nniq: Any, nnq: Any) -> Callable[..., Tensor]:
    """A torch.ao quantized conv / linear (``m``) or add (``m`` None) with its output at ``scale``, ``zp``."""
    if m is None:
        add = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add
        return lambda a, b: add(a, b, scale, zp)
    bias = None if m.bias is None else m.bias.detach().float()
    if isinstance(m, QuantConv2d):
        q = (nniq.ConvReLU2d if relu else nnq.Conv2d)(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                                                       m.padding, m.dilation, m.groups, m.bias is not None)
    else:
        q = (nniq.LinearReLU if relu else nnq.Linear)(m.in_features, m.out_features)
    q.set_weight_bias(_qweight(m), bias)
    q.scale, q.zero_point = scale, zp
    return q


def _requantize(scale: float, zp: int) -> Callable[[Tensor], Tensor]:
    """An activation quantizer: float -> quint8; a quint8 value already at (scale, zp) passes."""
    def run(x: Tensor) -> Tensor:
        if x.is_quantized:
            if (x.q_scale(), x.q_zero_point()) == (scale, zp):
                return x
            x = x.dequantize()
        return torch.quantize_per_tensor(x.float(), scale, zp, torch.quint8)

    return run


def _as_logits(logits: tuple[float, int]) -> Callable[[Tensor], Tensor]:
    return _requantize(*logits)
