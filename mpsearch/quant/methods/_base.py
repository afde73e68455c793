"""Weight-quantization method contract: one layer's float weight in, its quantized weight out.

A *method* (round-to-nearest, AdaRound, GPTQ, k-means, ...) decides how the weight of ONE layer
becomes ``2^bits`` representable values. The allocator pairs a method with a bit-width as one
candidate, so every method answers the same call and returns the same record::

    method = make_method("gptq", damp=0.01)          # or get_method("gptq")(GptqConfig(damp=0.01))
    res = method.quantize_weight(layer.weight, spec, calib_inputs=x, layer=layer, name="fc1")
    layer.weight.data = res.weight_dq                # what the fake-quant model computes with
    if res.bias is not None:
        layer.bias.data = res.bias                   # bias correction's new bias

Every method:

* is a :class:`WeightMethod` subclass registered in ``mpsearch.quant.methods.METHODS`` under its
  ``name``, built from a frozen config dataclass (its ``config_cls``, a :class:`MethodConfig`
  subclass checked in ``__post_init__``); the constructor stores the config, nothing more;
* has class attributes ``needs_data`` (True: ``calib_inputs`` is required and a call without
  them raises :class:`ConfigError` naming the layer, the method and the rule), ``is_uniform``
  (codes are integers on a uniform grid with ``scale``/``zero_point``), ``integer_codebook``
  (a non-uniform method whose codebook is ``scale * integer`` values, so the integer path can
  look codes up to int8 integers; the result repeats the value it actually produced);
* takes ``weight`` (any float tensor, output channels on axis 0: Linear ``(out, in)``, Conv
  ``(out, in/groups, kh, kw)``, Embedding ``(num, dim)``), ``spec`` (a :class:`QuantSpec`: bits,
  symmetric, granularity per_tensor / per_channel / per_group with axis 0), and keywords:
  ``calib_inputs`` -- the layer's float INPUT activations on calibration data, stacked on
  dim 0 (Linear: ``(..., in_features)``; Conv: ``(N, C_in, H, W)``), captured from the FLOAT
  model (see :func:`mpsearch.quant.methods.capture_inputs`); ``layer`` -- the nn.Module the
  weight belongs to (conv geometry: stride, padding, dilation, groups; its ``bias``); when
  None the weight is applied as a Linear (2-D weight) -- and ``name`` (the layer's module name,
  used in messages);
* never changes ``weight`` or ``layer`` (the caller applies the result);
* returns a :class:`MethodResult` (below) and records its own wall time in ``run_time_s``;
* refuses a layer it cannot handle through :meth:`WeightMethod.check_layer` /
  :meth:`WeightMethod.unsupported_reason` (e.g. GPTQ on an embedding), with a
  :class:`ConfigError` naming layer, method and rule.

Codes and codebooks. Rows are those of :func:`mpsearch.quant.quantizer.to_rows` for ``spec``
(per_tensor: 1 row; per_channel: one per output channel; per_group: ``out * n_groups`` rows
in channel-major order). A uniform result has ``codes`` (int32, weight's shape) in
``[spec.qmin, spec.qmax]`` and ``weight_dq == dequantize(codes, scale, zero_point, spec)``
exactly. A non-uniform result has ``codes`` (int32, weight's shape) in ``[0, K)`` indexing its
row's codebook, ``codebook`` float32 ``(n_rows, K)`` with ``K <= 2^spec.bits``, and
``weight_dq == from_rows(codebook.gather(1, to_rows(codes)))`` exactly; with an integer
codebook also ``codebook_int`` (int32 ``(n_rows, K)``, values in int8's range) and
``scale`` (float32 ``(n_rows,)``) with ``codebook == scale[:, None] * codebook_int``.

Storage (``extra_bits``): every bit the layer stores beyond its ``n_weights * spec.bits`` code
bits, with one float side value counted as :data:`FLOAT_BITS` (16: fp16). Uniform: one scale per
row, plus one zero point of ``spec.bits`` per row when asymmetric
(:func:`uniform_extra_bits`) -- the same for every uniform method, so a uniform method costs
exactly what round-to-nearest costs. Float codebook: ``n_rows * K * 16``. Integer codebook:
``n_rows * (K * 8 + 16)`` (int8 table plus a scale). A method whose codebook is generated from
fewer stored numbers says so and counts those (binary code: ``n_rows * bits * 16``, its ``bits``
scales per row). The bias is not counted here.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mpsearch.errors import ConfigError, rule_error
from mpsearch.quant.quantizer import param_shape
from mpsearch.quant.spec import QuantSpec

#: bits one float side value (scale, codebook entry) takes in storage (fp16).
FLOAT_BITS = 16


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method's frozen config (a method without options uses it as is)."""


@dataclass(frozen=True)
class MethodResult:
    """One layer's quantized weight as a method produced it (see the module docstring).

    Attributes:
        method: the method's registered name.
        weight_dq: float32 dequantized weight, the weight's shape (what fake-quant computes with).
        codes: int32 codes, the weight's shape (uniform: integer codes; else codebook indices).
        scale: uniform: float32 of ``param_shape(weight.shape, spec)``; integer codebook: per-row
            scale ``(n_rows,)``; else None.
        zero_point: uniform: int32 of the scale's shape; else None.
        codebook: non-uniform: float32 ``(n_rows, K)``; uniform: None.
        codebook_int: integer codebook: int32 ``(n_rows, K)`` in [-128, 127]; else None.
        bias: the layer's new float bias (bias correction), or None when unchanged.
        extra_bits: side storage in bits beyond the codes (scales, zero points, codebooks).
        is_uniform: codes on a uniform grid (scale / zero point).
        integer_codebook: non-uniform with an integer codebook (integer path: lookup to int8).
        run_time_s: wall time of the method on this layer, in seconds.
        info: method-specific figures (iterations, loss before / after, ...), plain data.
    """

    method: str
    weight_dq: Tensor
    codes: Tensor
    scale: Tensor | None
    zero_point: Tensor | None
    codebook: Tensor | None
    codebook_int: Tensor | None
    bias: Tensor | None
    extra_bits: int
    is_uniform: bool
    integer_codebook: bool
    run_time_s: float
    info: dict[str, Any]

    @property
    def n_codes(self) -> int:
        """Codes per row actually used by the format (``K`` of the codebook, or the uniform grid)."""
        if self.codebook is not None:
            return int(self.codebook.shape[1])
        return -1  # uniform: the spec's n_levels (the caller knows the spec)


def uniform_extra_bits(shape: tuple[int, ...] | torch.Size, spec: QuantSpec) -> int:
    """Side storage of a uniform weight under ``spec``: fp16 scales (+ a zero point per scale if asymmetric)."""
    n = 1
    for d in param_shape(shape, spec):
        n *= int(d)
    return n * FLOAT_BITS + (0 if spec.symmetric else n * spec.bits)


def layer_kind(layer: nn.Module | None) -> str:
    """``"linear"``, ``"conv1d"``, ``"conv2d"``, ``"embedding"`` or ``"other"`` (None: linear)."""
    if layer is None or isinstance(layer, nn.Linear):
        return "linear"
    if isinstance(layer, nn.Conv2d):
        return "conv2d"
    if isinstance(layer, nn.Conv1d):
        return "conv1d"
    if isinstance(layer, nn.Embedding):
        return "embedding"
    return "other"


class WeightMethod(ABC):
    """Base class of the weight-quantization methods; the module docstring states the contract."""

    name: ClassVar[str] = ""
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    needs_data: ClassVar[bool] = False
    is_uniform: ClassVar[bool] = True
    integer_codebook: ClassVar[bool] = False
    #: layer kinds (see :func:`layer_kind`) the method handles
    layer_kinds: ClassVar[tuple[str, ...]] = ("linear", "conv1d", "conv2d", "embedding")

    def __init__(self, config: MethodConfig | None = None) -> None:
        config = self.config_cls() if config is None else config
        if not isinstance(config, self.config_cls):
            raise rule_error(f"method {self.name!r}", "config", f"a {self.config_cls.__name__}",
                             type(config).__name__)
        self.config = config

    def unsupported_reason(self, layer: nn.Module | None) -> str | None:
        """Why this method cannot quantize ``layer``'s weight, or None when it can."""
        kind = layer_kind(layer)
        if kind not in self.layer_kinds:
            return f"it handles {', '.join(self.layer_kinds)} layers, and this one is {kind}"
        if self.needs_data and kind == "conv2d" and layer is not None and layer.padding_mode != "zeros":
            return f"it replays the layer on its inputs and supports padding_mode 'zeros', not {layer.padding_mode!r}"
        return None

    def check_layer(self, layer: nn.Module | None, name: str = "layer") -> None:
        """Raise ConfigError naming the layer, the method and the rule when it cannot run here."""
        reason = self.unsupported_reason(layer)
        if reason is not None:
            raise ConfigError(f"layer {name!r}: method {self.name!r} cannot quantize it: {reason}")

    def quantize_weight(self, weight: Tensor, spec: QuantSpec, *, calib_inputs: Tensor | None = None,
                        layer: nn.Module | None = None, name: str = "layer") -> MethodResult:
        """Quantize ``weight`` under ``spec`` (contract in the module docstring).

        Raises:
            ConfigError: a data-needing method without ``calib_inputs``; a layer the method
                cannot handle; a spec the method cannot honour (e.g. more clusters than weights).
        """
        if not isinstance(spec, QuantSpec):
            raise rule_error(f"layer {name!r}, method {self.name!r}", "spec", "a QuantSpec", type(spec).__name__)
        if not isinstance(weight, Tensor) or not weight.is_floating_point():
            raise rule_error(f"layer {name!r}, method {self.name!r}", "weight", "a float tensor", type(weight).__name__)
        if self.needs_data and calib_inputs is None:
            raise ConfigError(f"layer {name!r}: method {self.name!r} needs calibration inputs (calib_inputs: the "
                              f"layer's input activations on calibration data), but got None; give calibration "
                              f"batches, use `data: distilled`, or pick a data-free method")
        self.check_layer(layer, name)
        start = time.perf_counter()
        with torch.no_grad():
            w = weight.detach().float()
            x = None if calib_inputs is None else calib_inputs.detach().float().to(w.device)
        result = self._quantize(w, spec, x, layer, name)
        elapsed = time.perf_counter() - start
        return _with_time(result, elapsed)

    @abstractmethod
    def _quantize(self, weight: Tensor, spec: QuantSpec, calib_inputs: Tensor | None, layer: nn.Module | None,
                  name: str) -> MethodResult:
        """Subclasses: the method itself (``weight`` float32 detached; return ``run_time_s=0``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def _with_time(result: MethodResult, seconds: float) -> MethodResult:
    from dataclasses import replace

    return replace(result, run_time_s=float(seconds))
