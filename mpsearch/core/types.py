"""Layer, Candidate and Sensitivity: the plain values the pipeline passes around."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Mapping

from mpsearch.core.checks import VALID_BITS, check_bits, check_choice  # noqa: F401 (VALID_BITS: its old home)
from mpsearch.core.formats import (
    DEFAULT_METHOD,
    FLOAT_A_BITS,
    check_format,
    check_method,
    format_key,
    is_format,
    parse_format_key,
)
from mpsearch.errors import ConfigError, rule_error, unknown_name

#: Layer kinds that mpsearch quantizes. Others stay in floating point. "embedding" is a lookup:
#: weight [num_embeddings, embedding_dim], no MACs, indices as input (no activation quantizer).
LAYER_KINDS = ("conv1d", "conv2d", "depthwise_conv1d", "depthwise_conv2d", "linear", "embedding")

#: How a candidate's weight scale is shared.
W_GRANULARITIES = ("per_channel", "per_tensor", "per_group")


@dataclass(frozen=True)
class Join:
    """A point where the outputs of several layers meet (residual add or concat).

    Attributes:
        name: the graph node (or module) name of the add / cat.
        op: "add" or "cat".
        inputs: names of the quantizable layers whose outputs reach this join, possibly
            through ops that keep the scale (ReLU, pooling, flatten, BatchNorm).
    """

    name: str
    op: str
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class Layer:
    """One quantizable layer of a model.

    Shapes include the batch dimension of the example inputs; ``macs`` is per example
    (the batch dimension divided out).
    """

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    n_params: int  # weight + bias elements
    macs: int  # multiply-accumulates for one example
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    index: int = 0  # order of execution in the forward pass
    has_bias: bool = False
    in_channels: int = 0
    out_channels: int = 0
    kernel_size: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    groups: int = 1
    shares_input_with: tuple[str, ...] = ()  # other layers that read the same input tensor
    joins: tuple[str, ...] = ()  # names of the Join nodes this layer's output reaches
    shares_weight_with: tuple[str, ...] = ()  # other layers holding the same weight Parameter (tied)

    @property
    def n_weights(self) -> int:
        """Number of weight elements (no bias)."""
        return math.prod(self.weight_shape)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, order=True)
class Candidate:
    """One option for a layer: weight and activation bit-widths, and the format around them.

    ``w_granularity`` is how the weight scale is shared ("per_channel", "per_tensor",
    "per_group"); ``a_bits`` is the bit-width of the layer's input activation. The LLM format
    fields (:mod:`mpsearch.core.formats`) default to today's integer pair:

    * ``group_size``: weights per scale along the input features (with ``per_group``);
    * ``w_zero_point``: asymmetric weights with a stored zero point per scale;
    * ``a_mode``: "static" (one calibrated per-tensor range) or "dynamic_per_token";
      ``a_bits == 16`` is weight-only (activations stay 16-bit float).

    ``method`` is the weight quantization method (``mpsearch.quant.methods``; "rtn" =
    round-to-nearest, the default, left out of the key).

    ``key`` names it: ``"w4a8"`` as before, ``"w4a16g128"``, ``"w4a16g128z"``, ``"w8a8t"``,
    ``"w16a16"``, ``"w4a8+gptq"``; :meth:`parse` reads every key back.
    """

    w_bits: int
    a_bits: int
    w_granularity: str = "per_channel"
    group_size: int | None = None
    w_zero_point: bool = False
    a_mode: str = "static"
    method: str = DEFAULT_METHOD

    def __post_init__(self) -> None:
        check_method(self.method, "Candidate")
        check_bits(self.w_bits, "Candidate", "w_bits")
        check_bits(self.a_bits, "Candidate", "a_bits")
        check_choice(self.w_granularity, "Candidate", "w_granularity", W_GRANULARITIES)
        check_format("Candidate", self.w_bits, self.a_bits, self.w_granularity, self.group_size,
                     self.w_zero_point, self.a_mode)

    @property
    def key(self) -> str:
        """Short name such as ``"w4a8"`` (the form profiles use for LUT keys) or ``"w4a16g128z"``."""
        return format_key(self.w_bits, self.a_bits, self.group_size, self.w_zero_point, self.a_mode, self.method)

    @property
    def bits_key(self) -> str:
        """The key without the method (``"w4a8"`` for ``"w4a8+gptq"``): how the layer is stored and run."""
        return format_key(self.w_bits, self.a_bits, self.group_size, self.w_zero_point, self.a_mode)

    @property
    def is_format(self) -> bool:
        """True for an LLM format (weight-only, grouped, zero point or per-token), not a plain pair."""
        return is_format(self.a_bits, self.group_size, self.w_zero_point, self.a_mode)

    @property
    def weight_only(self) -> bool:
        """True when the input activation stays float (``a_bits == 16``)."""
        return self.a_bits == FLOAT_A_BITS

    @classmethod
    def parse(cls, key: str, where: str = "") -> "Candidate":
        """Parse ``"w4a8"`` into ``Candidate(4, 8)``, ``"w4a16g128z"`` into its format, and so on."""
        f = parse_format_key(key, where)
        gran = "per_group" if f["group_size"] is not None else "per_channel"
        return cls(f["w_bits"], f["a_bits"], gran, f["group_size"], f["w_zero_point"], f["a_mode"], f["method"])


@dataclass(frozen=True)
class LayerSensitivity:
    """Sensitivity figures of one layer; absent figures are None.

    Attributes:
        trace: Hessian trace of the loss w.r.t. the layer's weights (sum of the diagonal).
        trace_stderr: standard error of ``trace`` over probes.
        n_probes: probes used for ``trace``.
        n_params: weight elements the trace covers (mean trace = trace / n_params).
        eigenvalue: top Hessian eigenvalue of the layer's weight block.
        activation_trace: Hessian trace w.r.t. the layer's input activation (per example).
        activation_trace_stderr: its standard error.
        activation_numel: elements of one example's input activation.
        fisher: trace of the empirical Fisher: the mean over examples of the squared per-example
            gradient norm (``FisherConfig(granularity="per_batch")`` uses batch gradients).
        empirical: candidate key -> measured loss increase with this layer alone quantized.
    """

    trace: float | None = None
    trace_stderr: float | None = None
    n_probes: int = 0
    n_params: int = 0
    eigenvalue: float | None = None
    activation_trace: float | None = None
    activation_trace_stderr: float | None = None
    activation_numel: int = 0
    fisher: float | None = None
    empirical: Mapping[str, float] | None = None

    @property
    def mean_trace(self) -> float | None:
        """Hessian trace divided by the number of parameters (HAWQ-V2's scale)."""
        if self.trace is None or not self.n_params:
            return None
        return self.trace / self.n_params

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["empirical"] is not None:
            d["empirical"] = dict(d["empirical"])
        return d


@dataclass(frozen=True)
class Sensitivity:
    """Per-layer sensitivity, keyed by module name, and how it was measured."""

    layers: Mapping[str, LayerSensitivity]
    method: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> LayerSensitivity:
        try:
            return self.layers[name]
        except KeyError:
            raise unknown_name("layer", name, self.layers, "Sensitivity") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "meta": dict(self.meta),
            "layers": {k: v.to_dict() for k, v in self.layers.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "sensitivity") -> "Sensitivity":
        from mpsearch.core.io import check_keys

        check_keys(data, ("method", "meta", "layers"), where, required=("method", "layers"))
        valid = LayerSensitivity.__dataclass_fields__.keys()
        layers = {}
        for name, rec in dict(data["layers"]).items():
            check_keys(rec, valid, where, f"layers.{name}")
            layers[name] = LayerSensitivity(**rec)
        if not isinstance(data["method"], str):
            raise ConfigError(f"{where}: method must be a string, but got {data['method']!r}")
        return cls(layers=layers, method=data["method"], meta=dict(data.get("meta") or {}))
