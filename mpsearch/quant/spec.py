"""QuantSpec: how one tensor is quantized (bits, sign, symmetry, range, granularity, scale kind).

A spec is pure data; :mod:`mpsearch.quant.quantizer` turns it into integers. Integer range
(``qmin``/``qmax``) by spec:

=========  ==========  ==========================================  =========
signed     restricted  range                                       levels
=========  ==========  ==========================================  =========
True       False       ``[-2^(b-1), 2^(b-1) - 1]``                   ``2^b``
True       True        ``[-(2^(b-1) - 1), 2^(b-1) - 1]``             ``2^b - 1``
False      False       ``[0, 2^b - 1]``                              ``2^b``
False      True        ``[0, 2^b - 2]``                              ``2^b - 1``
=========  ==========  ==========================================  =========

Activations are signed by default so that any width from 2 to 8 bits fits in an int8
(docs/architecture.md, integer-only execution); post-ReLU tensors then use an asymmetric spec whose
zero point sits at ``qmin``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from mpsearch.core.checks import check_bits, check_bool, check_choice, check_int
from mpsearch.core.profile import GRANULARITIES, MODES, SCALE_KINDS, Capabilities
from mpsearch.errors import rule_error

#: granularities of a spec: the weights' (profile) ones, and "per_token" for activations
#: (one scale per row of the last dimension: each token of a [.., T, D] input)
SPEC_GRANULARITIES = (*GRANULARITIES, "per_token")


@dataclass(frozen=True)
class QuantSpec:
    """How one tensor is quantized.

    Attributes:
        bits: bit-width, 2..8 or 16.
        symmetric: zero point fixed at 0 (scale from ``max(|min|, |max|)``).
        signed: integers centred on 0 (True) or starting at 0 (False).
        restricted_range: drop one code so a signed range is symmetric (``-127..127``).
        granularity: "per_tensor", "per_channel" (one scale per index of ``axis``),
            "per_group" (per channel, and within it groups of ``group_size`` consecutive
            elements of the flattened remaining dimensions) or "per_token" (one scale per
            row of the last dimension: each token of a ``[.., T, D]`` activation; dynamic).
        axis: channel axis for per_channel / per_group (0 for weights, 1 for NC... activations).
        group_size: elements per group (per_group only).
        scale_kind: "float", "dyadic" (a float scale whose rescales the integer executor
            turns into ``m / 2^s``; quantization itself is as "float") or "power_of_two"
            (scale rounded UP to ``2^k`` so the min-max range stays covered).
    """

    bits: int
    symmetric: bool
    signed: bool
    restricted_range: bool = False
    granularity: str = "per_tensor"
    axis: int = 0
    group_size: int | None = None
    scale_kind: str = "float"

    def __post_init__(self) -> None:
        check_bits(self.bits, "QuantSpec", "bits")
        for key in ("symmetric", "signed", "restricted_range"):
            check_bool(getattr(self, key), "QuantSpec", key)
        check_choice(self.granularity, "QuantSpec", "granularity", SPEC_GRANULARITIES)
        check_int(self.axis, "QuantSpec", "axis", min=0)
        if self.granularity == "per_group":
            check_int(self.group_size, "QuantSpec", "group_size", min=1, rule="an integer >= 1 when granularity is per_group")
        elif self.group_size is not None:
            raise rule_error("QuantSpec", "group_size", f"None unless granularity is per_group (it is "
                             f"{self.granularity})", self.group_size)
        check_choice(self.scale_kind, "QuantSpec", "scale_kind", SCALE_KINDS)

    @property
    def qmin(self) -> int:
        """Smallest integer code."""
        if not self.signed:
            return 0
        return -(2 ** (self.bits - 1)) + (1 if self.restricted_range else 0)

    @property
    def qmax(self) -> int:
        """Largest integer code."""
        if self.signed:
            return 2 ** (self.bits - 1) - 1
        return 2**self.bits - 1 - (1 if self.restricted_range else 0)

    @property
    def n_levels(self) -> int:
        """Number of integer codes, ``qmax - qmin + 1``."""
        return self.qmax - self.qmin + 1

    @property
    def layout(self) -> tuple[str, int, int | None]:
        """What decides the shape of scale / zero point: (granularity, axis, group_size)."""
        if self.granularity in ("per_tensor", "per_token"):
            return (self.granularity, 0, None)
        return (self.granularity, self.axis, self.group_size)

    def with_bits(self, bits: int) -> "QuantSpec":
        """The same spec at another bit-width."""
        return replace(self, bits=bits)


def _pick_granularity(caps: Capabilities | None, wanted: str | None, key: str) -> str:
    if wanted is not None:
        return check_choice(wanted, "QuantSpec", key, GRANULARITIES)
    if caps is None or "per_channel" in caps.weight_granularity or not caps.weight_granularity:
        return "per_channel"
    return caps.weight_granularity[0]


def _mode(value: Any, key: str) -> bool:
    return check_choice(value, "Capabilities", key, MODES) == "symmetric"


def format_weight_spec(caps: Capabilities | None, fmt: Any, restricted_range: bool = False) -> QuantSpec:
    """The weight spec of an LLM format (a Candidate or LayerBits with ``is_format`` / format fields).

    Group-wise when ``fmt.group_size`` is set (groups of input features), else per output
    channel; asymmetric exactly when ``fmt.w_zero_point``; float scales (stored as fp16).
    ``w16a16`` (keep in 16-bit) is simulated on a 16-bit per-channel grid.
    """
    group_size = getattr(fmt, "group_size", None)
    return weight_spec(caps, fmt.w_bits, granularity="per_group" if group_size is not None else "per_channel",
                       group_size=group_size, symmetric=not getattr(fmt, "w_zero_point", False),
                       restricted_range=restricted_range, scale_kind="float")


def weight_spec(caps: Capabilities | None, bits: int, *, granularity: str | None = None,
                group_size: int | None = None, symmetric: bool | None = None,
                restricted_range: bool = False, scale_kind: str | None = None) -> QuantSpec:
    """Spec for a layer's weight (channel axis 0, signed).

    Args:
        caps: device capabilities; None means symmetric, per-channel, float scales.
        bits: weight bit-width.
        granularity: overrides the device's preferred granularity (per_channel when allowed).
        group_size: elements per group when granularity is per_group.
        symmetric: overrides ``caps.weight_mode``.
        restricted_range: use ``-(2^(b-1)-1)..2^(b-1)-1``.
        scale_kind: overrides ``caps.scale``.
    """
    sym = symmetric if symmetric is not None else (True if caps is None else _mode(caps.weight_mode, "weight_mode"))
    kind = scale_kind if scale_kind is not None else ("float" if caps is None else caps.scale)
    return QuantSpec(bits=bits, symmetric=sym, signed=True, restricted_range=restricted_range,
                     granularity=_pick_granularity(caps, granularity, "weight_granularity"), axis=0,
                     group_size=group_size, scale_kind=kind)


def activation_spec(caps: Capabilities | None, bits: int, *, granularity: str = "per_tensor",
                    symmetric: bool | None = None, signed: bool = True, scale_kind: str | None = None,
                    axis: int = 1) -> QuantSpec:
    """Spec for an activation tensor (per-tensor by default, channel axis 1 otherwise).

    Args:
        caps: device capabilities; None means asymmetric with float scales.
        bits: activation bit-width.
        granularity: per_tensor (default), per_channel along ``axis``, or per_token (one
            scale per row of the last dimension, for dynamic per-token ranges).
        symmetric: overrides ``caps.activation_mode``.
        signed: signed codes (default, fits int8 storage for every width up to 8).
        scale_kind: overrides ``caps.scale``.
        axis: channel axis of the activation (1 for N, C, ... layouts).
    """
    sym = (symmetric if symmetric is not None
           else (False if caps is None else _mode(caps.activation_mode, "activation_mode")))
    kind = scale_kind if scale_kind is not None else ("float" if caps is None else caps.scale)
    return QuantSpec(bits=bits, symmetric=sym, signed=signed, granularity=granularity,
                     axis=axis, scale_kind=kind)
