"""QuantizeConfig: how :func:`mpsearch.quant.quantize` builds the simulated-quant model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from mpsearch.core.checks import check_bool, check_choice, check_int
from mpsearch.core.profile import GRANULARITIES, MODES, SCALE_KINDS, HardwareProfile
from mpsearch.errors import rule_error
from mpsearch.quant.calibrators import calibrator_options, get_calibrator
from mpsearch.quant.spec import QuantSpec, activation_spec, weight_spec

ACTIVATION_RANGES = ("static", "dynamic")


@dataclass(frozen=True)
class QuantizeConfig:
    """Options of :func:`~mpsearch.quant.quantize`; ``None`` fields follow the profile.

    Attributes:
        weight_calibrator: calibrator for weights ("minmax" default; "mse", "percentile", "kl").
        weight_calibrator_options: keyword options of that calibrator.
        activation_calibrator: calibrator for activations ("minmax", "percentile", "mse", "kl").
        activation_calibrator_options: keyword options, e.g. ``{"percentile": 99.99}``.
        weight_mode: "symmetric" | "asymmetric"; None: profile's ``weight_mode``, else symmetric.
        activation_mode: "symmetric" | "asymmetric"; None: profile's, else asymmetric.
        weight_granularity: None: per_channel when the profile allows it (or no profile),
            else the profile's first granularity.
        group_size: elements per group when the weight granularity is per_group (None: the
            profile's ``capabilities.group_size``). Groups are consecutive elements of each
            output channel's flattened weight (``in_features`` for Linear, ``(cin/groups, *kernel)``
            for a conv).
        weight_restricted_range: weights use ``-(2^(b-1)-1)..2^(b-1)-1``.
        activation_granularity: "per_tensor" (default) or "per_channel" (channel axis 1).
        scale_kind: "float" | "dyadic" | "power_of_two"; None: profile's ``scale``, else float.
        activation_range: "static" (calibrated, frozen) or "dynamic" (min-max per batch).
        fold_bn: fold BatchNorm into the layer before it (eval statistics) before quantizing.
        n_calib_batches: use at most this many calibration batches.
        method_inputs: the inputs a data-needing weight method (GPTQ, AdaRound, ...) fits on:
            "float" (every layer's inputs from the float model, captured once) or "quantized"
            (sequential: each layer's inputs from the model whose earlier layers are already
            quantized, weights only; one calibration pass per such layer).
    """

    weight_calibrator: str = "minmax"
    weight_calibrator_options: Mapping[str, Any] = field(default_factory=dict)
    activation_calibrator: str = "minmax"
    activation_calibrator_options: Mapping[str, Any] = field(default_factory=dict)
    weight_mode: str | None = None
    activation_mode: str | None = None
    weight_granularity: str | None = None
    group_size: int | None = None
    weight_restricted_range: bool = False
    activation_granularity: str = "per_tensor"
    scale_kind: str | None = None
    activation_range: str = "static"
    fold_bn: bool = True
    n_calib_batches: int = 32
    method_inputs: str = "float"

    def __post_init__(self) -> None:
        where = "QuantizeConfig"
        for key in ("weight_calibrator", "activation_calibrator"):
            name = getattr(self, key)
            get_calibrator(name, f"{where}.{key}")
            valid = calibrator_options(name)
            opts = getattr(self, key.replace("calibrator", "calibrator_options"))
            if not isinstance(opts, Mapping):
                raise rule_error(where, f"{key}_options", "a mapping of option -> value", opts)
            for opt in opts:
                if opt not in valid:
                    raise rule_error(where, f"{key}_options key", f"one of {list(valid)} for {name!r}", opt)
        for key in ("weight_mode", "activation_mode"):
            if getattr(self, key) is not None and getattr(self, key) not in MODES:
                raise rule_error(where, key, f"None or one of {', '.join(MODES)}", getattr(self, key))
        if self.weight_granularity is not None and self.weight_granularity not in GRANULARITIES:
            raise rule_error(where, "weight_granularity", f"None or one of {', '.join(GRANULARITIES)}",
                             self.weight_granularity)
        if self.activation_granularity not in ("per_tensor", "per_channel"):
            raise rule_error(where, "activation_granularity", "per_tensor or per_channel", self.activation_granularity)
        if self.scale_kind is not None and self.scale_kind not in SCALE_KINDS:
            raise rule_error(where, "scale_kind", f"None or one of {', '.join(SCALE_KINDS)}", self.scale_kind)
        check_choice(self.activation_range, where, "activation_range", ACTIVATION_RANGES)
        check_bool(self.fold_bn, where, "fold_bn")
        check_bool(self.weight_restricted_range, where, "weight_restricted_range")
        check_int(self.n_calib_batches, where, "n_calib_batches", min=1)
        check_choice(self.method_inputs, where, "method_inputs", ("float", "quantized"))
        # Build one spec of each kind now so a bad combination fails here, not mid-model.
        self.weight_spec(None, 8)
        self.activation_spec(None, 8)

    def weight_spec(self, profile: HardwareProfile | None, bits: int) -> QuantSpec:
        """The weight spec at ``bits`` under this config and ``profile``.

        Per-group weights take ``group_size`` from this config, else the profile's
        ``capabilities.group_size``.
        """
        caps = profile.capabilities if profile is not None else None
        sym = None if self.weight_mode is None else self.weight_mode == "symmetric"
        gran = self.weight_granularity or _profile_gran(profile)
        group_size = None
        if gran == "per_group":
            group_size = self.group_size if self.group_size is not None else getattr(caps, "group_size", None)
        return weight_spec(caps, bits, granularity=gran, group_size=group_size, symmetric=sym,
                           restricted_range=self.weight_restricted_range, scale_kind=self.scale_kind)

    def activation_spec(self, profile: HardwareProfile | None, bits: int) -> QuantSpec:
        """The activation spec at ``bits`` under this config and ``profile``."""
        caps = profile.capabilities if profile is not None else None
        sym = None if self.activation_mode is None else self.activation_mode == "symmetric"
        return activation_spec(caps, bits, granularity=self.activation_granularity, symmetric=sym,
                               scale_kind=self.scale_kind)


def _profile_gran(profile: HardwareProfile | None) -> str:
    if profile is None:
        return "per_channel"
    grans = profile.capabilities.weight_granularity
    return "per_channel" if (not grans or "per_channel" in grans) else grans[0]


__all__ = ["ACTIVATION_RANGES", "QuantizeConfig"]
