"""HardwareProfile: what a device can run (capabilities, rules) and what it costs.

Plain frozen data. Reading and validating YAML lives in ``mpsearch.hardware``; the types
sit here so that ``quant/`` (below ``hardware/`` in the stack) can read capabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

SCALE_KINDS = ("float", "dyadic", "power_of_two")
MODES = ("symmetric", "asymmetric")
GRANULARITIES = ("per_channel", "per_tensor", "per_group")

#: bytes of one stored scale, zero point or bias element of an LLM format, by ``formats.scale_dtype``
SCALE_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}

#: layer kinds that LLM formats apply to
FORMAT_OPS = ("linear", "embedding")


@dataclass(frozen=True)
class FormatCapabilities:
    """The LLM weight formats a device runs (``capabilities.formats``; see :mod:`mpsearch.core.formats`).

    Attributes:
        keys: format keys such as ``"w4a16g128"``, ``"w4a16g128z"``, ``"w8a8t"``, ``"w16a16"``.
        ops: layer kinds that may take them (linear and embedding by default).
        scale_dtype: how scales, zero points and the bias are stored (float16: 2 bytes each).
    """

    keys: tuple[str, ...]
    ops: tuple[str, ...] = FORMAT_OPS
    scale_dtype: str = "float16"

    @property
    def scale_bytes(self) -> int:
        """Bytes of one scale (or zero point, or bias element)."""
        return SCALE_DTYPE_BYTES[self.scale_dtype]

    def runs(self, key: str, op_kind: str) -> bool:
        """True when the device runs format ``key`` for layers of ``op_kind``."""
        return op_kind in self.ops and key in self.keys


@dataclass(frozen=True)
class OpCapabilities:
    """Overrides of the bit sets for one op kind (e.g. depthwise_conv2d only at 8 bits)."""

    weight_bits: tuple[int, ...] | None = None
    activation_bits: tuple[int, ...] | None = None
    pairs: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class Capabilities:
    """What the device can execute."""

    weight_bits: tuple[int, ...] = (8,)
    activation_bits: tuple[int, ...] = (8,)
    pairs: tuple[tuple[int, int], ...] | None = None  # whitelist of (w, a); None = all combinations
    weight_mode: str = "symmetric"
    weight_granularity: tuple[str, ...] = ("per_channel", "per_tensor")
    activation_mode: str = "asymmetric"
    scale: str = "dyadic"
    integer_only: bool = True
    per_op: Mapping[str, OpCapabilities] = field(default_factory=dict)
    group_size: int = 128  # weights per scale along the input dim when w_granularity is per_group
    formats: FormatCapabilities | None = None  # LLM weight formats (weight-only, W8A8 per-token), if any
    methods: tuple[str, ...] = ("rtn",)  # weight quantization methods it runs (core.formats.WEIGHT_METHODS)

    def allowed_pairs(self, op_kind: str | None = None) -> list[tuple[int, int]]:
        """The (w_bits, a_bits) pairs the device runs for ``op_kind``, sorted high to low."""
        over = self.per_op.get(op_kind) if op_kind else None
        wb = (over.weight_bits if over and over.weight_bits else None) or self.weight_bits
        ab = (over.activation_bits if over and over.activation_bits else None) or self.activation_bits
        pairs = (over.pairs if over and over.pairs else None) or self.pairs
        out = [(w, a) for w in wb for a in ab]
        if pairs is not None:
            allowed = {tuple(p) for p in pairs}
            out = [p for p in out if p in allowed]
        return sorted(out, reverse=True)


@dataclass(frozen=True)
class Rules:
    """Placement rules: bits fixed for the first and last quantized layer, if any."""

    first_layer: tuple[int, int] | None = None  # (w_bits, a_bits)
    last_layer: tuple[int, int] | None = None


@dataclass(frozen=True)
class LatencyStat:
    """A measured latency: mean and standard deviation over ``count`` repeats."""

    mean: float
    std: float = 0.0
    count: int = 1


@dataclass(frozen=True)
class LutEntry:
    """Measured latency of one op signature at several (w, a) pairs (keys like "w8a8")."""

    op: str
    shape: Mapping[str, Any]
    latency_ms: Mapping[str, LatencyStat]


@dataclass(frozen=True)
class Roofline:
    """Analytic fallback: time = max(ops / ops_per_s[pair], bytes / bytes_per_s) + overhead."""

    ops_per_s: Mapping[str, float]
    bytes_per_s: float
    overhead_ms: float = 0.0
    #: 16-bit float multiply-add rate (ops/s) of weight-only and 16-bit formats; None: the
    #: slowest ``ops_per_s`` (no speed-up assumed)
    float_ops_per_s: float | None = None


@dataclass(frozen=True)
class EnergyModel:
    """Energy of one layer run, in microjoules:

    ``active_mw * latency_ms + (ops * pj_per_op[pair] + bytes * pj_per_byte) * 1e-6``
    (1 mW for 1 ms is 1 uJ; 1e6 pJ is 1 uJ). Any term may be absent (zero).
    """

    active_mw: float = 0.0
    pj_per_op: Mapping[str, float] = field(default_factory=dict)  # keyed like "w8a8"
    pj_per_byte: float = 0.0


@dataclass(frozen=True)
class MemoryLimits:
    """Memory of the device, in bytes; None = no limit.

    ``weight_bytes`` bounds the model's total size (e.g. flash); ``activation_bytes`` bounds
    each layer's working set, input + output activations (e.g. SRAM).
    """

    weight_bytes: int | None = None
    activation_bytes: int | None = None


@dataclass(frozen=True)
class CostModel:
    """What running costs on the device: a roofline, measured entries, optional extras."""

    roofline: Roofline | None = None
    lut: tuple[LutEntry, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    energy: EnergyModel | None = None
    memory: MemoryLimits | None = None


@dataclass(frozen=True)
class HardwareProfile:
    """A device: its capabilities, placement rules and cost model."""

    name: str
    description: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)
    capabilities: Capabilities = field(default_factory=Capabilities)
    rules: Rules = field(default_factory=Rules)
    cost: CostModel = field(default_factory=CostModel)
    path: str | None = None  # file it was read from, for messages
