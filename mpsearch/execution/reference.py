"""PyTorch's own int8 kernels as a reference for W8A8 (``torch.ao.quantization``, deprecated but present).

:func:`torch_int8_reference` rebuilds a plain feed-forward fake-quant model (quantized conv /
linear, ReLU, max pool, flatten, identity) with ``torch.ao.nn.quantized`` modules, using
exactly the integers and scales of the fake-quant model: the same int8 weight codes (per
channel), the same activation scales and zero points (int8 codes ``q`` become quint8 codes
``q + 128``), and each conv's output quantized at the scale of the activation quantizer that
follows it. The last layer's output is quantized at ``logit_scale`` / ``logit_zero_point``.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import Tensor, fx, nn

from mpsearch.errors import UnsupportedModelError
from mpsearch.quant.modules import ActQuant, QuantConv2d, QuantLinear
from mpsearch.quant.quantizer import quantize as quantize_codes

_PASS = (nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Identity, nn.Dropout)


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


def _next_act_quant(node: fx.Node, gm: fx.GraphModule) -> tuple[ActQuant | None, bool]:
    """The activation quantizer a layer's output reaches through ReLU / pool / flatten, and whether a ReLU is passed."""
    relu = False
    while len(node.users) == 1:
        (node,) = node.users
        if node.op != "call_module":
            return None, relu
        m = gm.get_submodule(str(node.target))
        if isinstance(m, ActQuant):
            return m, relu
        if not isinstance(m, _PASS):
            return None, relu
        relu = relu or isinstance(m, nn.ReLU)
    return None, relu


def _qweight(m: nn.Module) -> Tensor:
    wq = m.weight_quant
    codes = quantize_codes(m.weight.detach().float(), wq.scale, wq.zero_point, wq.spec).to(torch.int8)
    scale = wq.scale.double().reshape(-1).expand(codes.shape[0]).contiguous()
    return torch._make_per_channel_quantized_tensor(codes, scale, torch.zeros(codes.shape[0], dtype=torch.long), 0)


def torch_int8_reference(qmodel: fx.GraphModule, logit_scale: float, logit_zero_point: int
                         ) -> Callable[[Tensor], Tensor]:
    """A function float input -> quint8 logits computed by PyTorch's int8 kernels.

    Raises:
        UnsupportedModelError: the graph is not a plain chain of supported modules, or not W8A8.
    """
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    with warnings.catch_warnings():  # torch.ao's quantized tensors are deprecated: we know
        warnings.simplefilter("ignore", UserWarning)
        return _build(qmodel, logit_scale, logit_zero_point, nniq, nnq)


def _build(qmodel: fx.GraphModule, logit_scale: float, logit_zero_point: int, nniq: object, nnq: object
           ) -> Callable[[Tensor], Tensor]:
    steps: list[Callable[[Tensor], Tensor]] = []
    input_q: tuple[float, int] | None = None
    relu_done: set[fx.Node] = set()
    for node in qmodel.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node.op != "call_module":
            raise UnsupportedModelError(f"torch_int8_reference: {node.op} {node.target} is not supported")
        m = qmodel.get_submodule(str(node.target))
        if isinstance(m, ActQuant):
            if m.spec.bits != 8 or m.spec.granularity != "per_tensor":
                raise UnsupportedModelError("torch_int8_reference: needs 8-bit per-tensor activations")
            if input_q is None:
                input_q = (float(m.scale), int(m.zero_point) + (128 if m.spec.signed else 0))
            continue  # conv outputs are already quantized at this quantizer's parameters
        if isinstance(m, (QuantConv2d, QuantLinear)):
            if m.w_bits != 8:
                raise UnsupportedModelError("torch_int8_reference: needs 8-bit weights")
            aq, relu = _next_act_quant(node, qmodel)
            if aq is not None:
                scale, zp = float(aq.scale), int(aq.zero_point) + (128 if aq.spec.signed else 0)
            else:
                scale, zp = logit_scale, logit_zero_point
            bias = None if m.bias is None else m.bias.detach().float()
            if isinstance(m, QuantConv2d):
                cls = nniq.ConvReLU2d if relu else nnq.Conv2d
                q = cls(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                        m.bias is not None)
            else:
                q = nnq.Linear(m.in_features, m.out_features)
            q.set_weight_bias(_qweight(m), bias)
            q.scale, q.zero_point = scale, zp
            steps.append(q)
            if relu:
                relu_done.update(u for u in node.users)
        elif isinstance(m, nn.ReLU):
            if node not in relu_done:
                steps.append(torch.relu)
        elif isinstance(m, nn.MaxPool2d):
            steps.append(lambda x, m=m: torch.nn.functional.max_pool2d(x, m.kernel_size, m.stride, m.padding,
                                                                        m.dilation, m.ceil_mode))
        elif isinstance(m, nn.Flatten):
            steps.append(lambda x, m=m: torch.flatten(x, m.start_dim, m.end_dim))
        elif not isinstance(m, (nn.Identity, nn.Dropout)):
            raise UnsupportedModelError(f"torch_int8_reference: module {node.target} ({type(m).__name__}) "
                                        "is not supported")
    if input_q is None:
        raise UnsupportedModelError("torch_int8_reference: the model input is not quantized")

    def run(x: Tensor) -> Tensor:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            y = torch.quantize_per_tensor(x.float(), input_q[0], input_q[1], torch.quint8)
            for step in steps:
                y = step(y)
        return y

    return run
