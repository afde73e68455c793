"""Fake-quant modules: ``ActQuant`` / ``WeightQuant`` and the quantized layers.

``ActQuant`` modes:

* ``"observe"``: pass the float tensor through and feed it to the calibrator;
* ``"quantize"``: fake-quantize with the frozen ``scale`` / ``zero_point`` buffers (static range);
* ``"dynamic"``: fake-quantize with the min-max of the current batch (dynamic range);
* ``"off"``: identity (for experiments that switch one quantizer off).

Quantized layers subclass their float module, so ``isinstance(m, nn.Conv2d)`` still holds and
``weight`` / ``bias`` stay the (BN-folded) float parameters; ``forward`` fake-quantizes the
weight with ``weight_quant`` and runs the float op. The bias stays float in simulation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mpsearch.errors import ConfigError, rule_error
from mpsearch.quant.calibrators import Calibrator, make_calibrator
from mpsearch.quant.quantizer import fake_quantize, fake_quantize_minmax
from mpsearch.quant.spec import QuantSpec

ACT_MODES = ("observe", "quantize", "dynamic", "off")


class ActQuant(nn.Module):
    """Fake-quantizes one activation tensor.

    Attributes:
        spec: the :class:`QuantSpec` (``bits`` is ``spec.bits``).
        scale / zero_point: buffers (float32 / int32) of the spec's parameter shape; valid
            once frozen.
        mode: one of ``observe``, ``quantize``, ``dynamic``, ``off``.
        calibrator: the calibrator collecting data in ``observe`` mode (None once frozen).
        source: the graph node whose output this quantizes ("" when it wraps a layer input).
        consumers: names of the quantized layers that read its output.
    """

    def __init__(self, spec: QuantSpec, calibrator: str | Calibrator = "minmax", mode: str = "observe",
                 calibrator_options: dict[str, Any] | None = None, source: str = "") -> None:
        super().__init__()
        self.spec = spec
        if isinstance(calibrator, str):
            calibrator = make_calibrator(calibrator, spec, "ActQuant", **(calibrator_options or {}))
        self.calibrator: Calibrator | None = calibrator
        self.calibrator_name = getattr(calibrator, "name", "")
        self.source = source
        self.consumers: list[str] = []
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("zero_point", torch.zeros((), dtype=torch.int32))
        self.frozen = False
        self.learned: nn.Module | None = None  # a LearnedRange during LSQ / PACT QAT (quant/learned.py)
        self.mode = "observe"
        self.set_mode(mode)

    @property
    def bits(self) -> int:
        return self.spec.bits

    def set_mode(self, mode: str) -> None:
        """Switch mode; ``quantize`` needs frozen parameters (see :meth:`freeze`)."""
        if mode not in ACT_MODES:
            raise rule_error("ActQuant", "mode", f"one of {', '.join(ACT_MODES)}", mode)
        if mode == "quantize" and not self.frozen:
            raise ConfigError("ActQuant: mode 'quantize' needs a calibrated range; call freeze() after observing "
                              "batches, or use mode 'dynamic'")
        if mode == "observe" and self.calibrator is None:
            raise ConfigError("ActQuant: mode 'observe' needs a calibrator, but this quantizer was frozen")
        self.mode = mode

    def freeze(self, keep_calibrator: bool = False) -> None:
        """Compute scale / zero point from the observed batches and switch to ``quantize``."""
        if self.calibrator is None:
            raise ConfigError("ActQuant: freeze() needs a calibrator, but it was already dropped")
        scale, zero_point = self.calibrator.compute(self.spec)
        self.set_qparams(scale, zero_point)
        if not keep_calibrator:
            self.calibrator = None  # the sample it kept can be large

    def set_qparams(self, scale: Tensor, zero_point: Tensor) -> None:
        """Freeze to given parameters (float32 scale, int32 zero point) and switch to ``quantize``."""
        device = self.scale.device
        self.scale = torch.as_tensor(scale, dtype=torch.float32).to(device).clone()
        self.zero_point = torch.as_tensor(zero_point).to(torch.int32).to(device).clone()
        self.frozen = True
        self.mode = "quantize"

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "off":
            return x
        if self.mode == "observe":
            self.calibrator.observe(x)  # type: ignore[union-attr]
            return x
        if self.mode == "dynamic":
            return fake_quantize_minmax(x, self.spec)
        if getattr(self, "learned", None) is not None:  # getattr: models pickled before the option
            return self.learned(x)  # type: ignore[misc]
        return fake_quantize(x, self.scale, self.zero_point, self.spec)

    def extra_repr(self) -> str:
        s = self.spec
        kind = "sym" if s.symmetric else "asym"
        return (f"bits={s.bits}, {kind}, {'signed' if s.signed else 'unsigned'}, {s.granularity}, "
                f"mode={self.mode}, source={self.source!r}")


class WeightQuant(nn.Module):
    """Fake-quantizes a weight with scales fixed when it is built (per output channel by default).

    Attributes:
        spec: the weight's :class:`QuantSpec`.
        scale / zero_point: buffers of the spec's parameter shape.
    """

    def __init__(self, weight: Tensor, spec: QuantSpec, calibrator: str = "minmax",
                 calibrator_options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.calibrator_name = calibrator
        cal = make_calibrator(calibrator, spec, "WeightQuant", **(calibrator_options or {}))
        cal.observe(weight.detach())
        scale, zero_point = cal.compute(spec)
        self.register_buffer("scale", scale.to(weight.device))
        self.register_buffer("zero_point", zero_point.to(weight.device))
        self.learned: nn.Module | None = None  # a LearnedRange during LSQ QAT (quant/learned.py)

    @property
    def bits(self) -> int:
        return self.spec.bits

    def forward(self, weight: Tensor) -> Tensor:
        if getattr(self, "learned", None) is not None:
            return self.learned(weight)  # type: ignore[misc]
        return fake_quantize(weight, self.scale, self.zero_point, self.spec)

    def extra_repr(self) -> str:
        return f"bits={self.spec.bits}, {'sym' if self.spec.symmetric else 'asym'}, {self.spec.granularity}"


class _QuantMixin:
    """Shared attributes of the quantized layers.

    ``w_bits`` is read from ``weight_quant.spec.bits`` (one place holds the weight's bits, so
    the two cannot disagree); ``a_bits`` is what the plan asked for the layer's input.
    """

    a_bits: int
    weight_quant: WeightQuant
    input_quant: ActQuant | None  # only in per-layer mode; in graph mode the graph holds it
    input_quant_name: str  # module path (in the quantized model) of the ActQuant feeding it

    def _init_quant(self, float_module: nn.Module, w_bits: int, a_bits: int, w_spec: QuantSpec,
                    w_calibrator: str, w_calibrator_options: dict[str, Any] | None) -> None:
        if w_spec.bits != w_bits:
            raise rule_error(f"{type(self).__name__}.from_float", "w_spec.bits", f"equal to w_bits ({w_bits})",
                             w_spec.bits)
        self.load_state_dict(float_module.state_dict())  # type: ignore[attr-defined]
        self.train(float_module.training)  # type: ignore[attr-defined]
        self.a_bits = a_bits
        self.weight_quant = WeightQuant(self.weight, w_spec, w_calibrator, w_calibrator_options)  # type: ignore[attr-defined]
        self.input_quant = None
        self.input_quant_name = ""

    @property
    def w_bits(self) -> int:
        """The weight's bit-width (read-only: ``weight_quant.spec.bits``)."""
        return self.weight_quant.spec.bits

    def quantized_weight(self) -> Tensor:
        """The fake-quantized weight (float values on the integer grid)."""
        return self.weight_quant(self.weight)  # type: ignore[attr-defined]

    def _maybe_quant_input(self, x: Tensor) -> Tensor:
        return self.input_quant(x) if self.input_quant is not None else x


class _QuantConv(_QuantMixin):
    """Shared by the 1-d and 2-d quantized convolutions (the float class supplies ``_conv_forward``)."""

    @classmethod
    def from_float(cls, m: nn.Conv1d | nn.Conv2d, w_bits: int, a_bits: int, w_spec: QuantSpec,
                   w_calibrator: str = "minmax", w_calibrator_options: dict[str, Any] | None = None) -> Any:
        q = cls(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                m.bias is not None, m.padding_mode, device=m.weight.device, dtype=m.weight.dtype)
        q._init_quant(m, w_bits, a_bits, w_spec, w_calibrator, w_calibrator_options)
        return q

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(self._maybe_quant_input(x), self.quantized_weight(), self.bias)  # type: ignore[attr-defined]


class QuantConv1d(_QuantConv, nn.Conv1d):
    """``nn.Conv1d`` whose forward uses the fake-quantized weight."""


class QuantConv2d(_QuantConv, nn.Conv2d):
    """``nn.Conv2d`` (grouped and depthwise too) whose forward uses the fake-quantized weight."""


class QuantLinear(_QuantMixin, nn.Linear):
    """``nn.Linear`` whose forward uses the fake-quantized weight."""

    @classmethod
    def from_float(cls, m: nn.Linear, w_bits: int, a_bits: int, w_spec: QuantSpec, w_calibrator: str = "minmax",
                   w_calibrator_options: dict[str, Any] | None = None) -> "QuantLinear":
        q = cls(m.in_features, m.out_features, m.bias is not None, device=m.weight.device, dtype=m.weight.dtype)
        q._init_quant(m, w_bits, a_bits, w_spec, w_calibrator, w_calibrator_options)
        return q

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self._maybe_quant_input(x), self.quantized_weight(), self.bias)


class QuantEmbedding(_QuantMixin, nn.Embedding):
    """``nn.Embedding`` whose lookup reads the fake-quantized table (scales per row, axis 0).

    Its input is integer indices, so it never has an input quantizer; ``a_bits`` is kept
    only so that every quantized layer answers the same attributes.
    """

    @classmethod
    def from_float(cls, m: nn.Embedding, w_bits: int, a_bits: int, w_spec: QuantSpec,
                   w_calibrator: str = "minmax", w_calibrator_options: dict[str, Any] | None = None
                   ) -> "QuantEmbedding":
        q = cls(m.num_embeddings, m.embedding_dim, m.padding_idx, m.max_norm, m.norm_type,
                m.scale_grad_by_freq, m.sparse, device=m.weight.device, dtype=m.weight.dtype)
        q._init_quant(m, w_bits, a_bits, w_spec, w_calibrator, w_calibrator_options)
        return q

    def forward(self, x: Tensor) -> Tensor:
        return F.embedding(x, self.quantized_weight(), self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)


#: float module type -> its quantized counterpart (exact types; subclasses are matched in order).
QUANT_MODULES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: QuantConv1d,
    nn.Conv2d: QuantConv2d,
    nn.Linear: QuantLinear,
    nn.Embedding: QuantEmbedding,
}

QUANT_LAYER_TYPES = (QuantConv1d, QuantConv2d, QuantLinear, QuantEmbedding)

#: quantized layers whose input is not an activation (integer indices): no input quantizer
INDEX_INPUT_TYPES = (QuantEmbedding,)


def quant_class_for(module: nn.Module) -> type[nn.Module] | None:
    """The quantized class for ``module``, or None if it is not quantizable."""
    if isinstance(module, QUANT_LAYER_TYPES):
        return None  # already quantized
    if isinstance(module, nn.modules.linear.NonDynamicallyQuantizableLinear):
        return None  # MultiheadAttention reads its weight directly; a swap would be ignored
    for float_cls, quant_cls in QUANT_MODULES.items():
        if isinstance(module, float_cls):
            return quant_cls
    return None

