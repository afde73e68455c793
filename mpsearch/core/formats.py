"""Candidate formats beyond a plain (w_bits, a_bits) pair: the formats people use for LLM weights.

A candidate (and a plan's :class:`~mpsearch.core.plan.LayerBits`) is named by one key:

==================  ===========================================================================
key                 format
==================  ===========================================================================
``w4a8``            integer weights and static per-tensor activations (the pairs of today)
``w8a16``           weight-only: 8-bit per-channel weights, activations stay 16-bit float
``w4a16g128``       weight-only, one scale per group of 128 input features, symmetric
``w4a16g128z``      the same with a zero point per group (asymmetric weights)
``w8a8t``           W8A8 with dynamic per-token activations (one scale per row of [.., T, D])
``w16a16``          keep the layer in 16-bit float (2 bytes per weight, no scales)
==================  ===========================================================================

Grammar: ``w<bits>a<bits>[g<group_size>][z][t][+<method>]``. ``+<method>`` names the weight
quantization method (:data:`WEIGHT_METHODS`, registered in :mod:`mpsearch.quant.methods`) when
it is not round-to-nearest (``rtn``, the default, never written): ``w4a8+gptq``,
``w3a16g128+kmeans``. ``a_bits == 16`` means weight-only (no
activation quantizer: activations stay float), so a weight-only format is static by
definition and cannot also be per-token. The key of a plain pair is unchanged (``w4a8``), so
today's candidates, plans and LUT keys keep their names.

A "format" in the profile sense (``capabilities.formats``, :func:`is_format`) is any key that
is not a plain integer pair: 16-bit activations, a group size, a zero point, or per-token
activations. Formats store their scales (and zero points, and bias) in the profile's
``formats.scale_dtype`` (float16 = 2 bytes), so 4-bit with group 128 is 4.125 bits per weight
and 4.25 with zero points (:func:`mpsearch.hardware.costs.size_bytes`).
"""

from __future__ import annotations

import re
from typing import Any

from mpsearch.errors import rule_error

#: How a candidate's input activation is quantized: "static" (one calibrated per-tensor range,
#: as today) or "dynamic_per_token" (one scale per row of the [.., T, D] input, from that row's
#: own range at run time).
A_MODES = ("static", "dynamic_per_token")

#: Activation bit-width that means "weight-only": the input stays in 16-bit float.
FLOAT_A_BITS = 16

#: Weight bit-widths of LLM formats (16 = keep the layer in 16-bit float).
FORMAT_W_BITS = (2, 3, 4, 8, 16)

KEY_RULE = ('of the form "w<bits>a<bits>[g<group_size>][z][t][+<method>]" such as "w4a8", "w4a16g128", '
            '"w4a16g128z", "w8a8t", "w16a16" or "w4a8+gptq"')

#: The weight quantization methods a candidate may name, as registered in
#: ``mpsearch.quant.methods.METHODS`` (core sits below quant, so the names are listed here;
#: tests/core checks the two agree). "rtn" (round-to-nearest) is the default.
WEIGHT_METHODS = ("rtn", "stochastic", "adaround", "bias_correction", "gptq", "kmeans", "hessian_kmeans",
                  "binary_code", "log2")
DEFAULT_METHOD = "rtn"

_KEY_RE = re.compile(r"w(\d+)a(\d+)(?:g(\d+))?(z?)(t?)")


def check_method(method: Any, where: str = "") -> str:
    """``method`` when it is one of :data:`WEIGHT_METHODS`; else a ConfigError listing them."""
    if not isinstance(method, str) or method not in WEIGHT_METHODS:
        raise rule_error(where, "method", f"one of {', '.join(WEIGHT_METHODS)}", method)
    return method


def format_key(w_bits: int, a_bits: int, group_size: int | None = None, w_zero_point: bool = False,
               a_mode: str = "static", method: str = DEFAULT_METHOD) -> str:
    """The key of a format (see the module docstring); ``w4a8`` for a plain pair, ``w4a8+gptq`` with a method."""
    key = f"w{w_bits}a{a_bits}"
    if group_size is not None:
        key += f"g{group_size}"
    if w_zero_point:
        key += "z"
    if a_mode == "dynamic_per_token":
        key += "t"
    if method != DEFAULT_METHOD:
        key += f"+{method}"
    return key


def parse_format_key(key: Any, where: str = "") -> dict[str, Any]:
    """The fields of a key: ``{w_bits, a_bits, group_size, w_zero_point, a_mode, method}``.

    Raises:
        ConfigError: ``key`` is not of the form ``w<bits>a<bits>[g<group_size>][z][t][+<method>]``,
            or names an unknown method (the message lists the valid ones).
    """
    text, _, method = str(key).strip().lower().partition("+") if isinstance(key, str) else ("", "", "")
    m = _KEY_RE.fullmatch(text) if isinstance(key, str) else None
    if not m:
        raise rule_error(where, "candidate key", KEY_RULE, key)
    method = check_method(method, where) if "+" in str(key) else DEFAULT_METHOD
    return {"method": method, "w_bits": int(m.group(1)), "a_bits": int(m.group(2)),
            "group_size": int(m.group(3)) if m.group(3) is not None else None,
            "w_zero_point": m.group(4) == "z", "a_mode": "dynamic_per_token" if m.group(5) else "static"}


def check_format(where: str, w_bits: int, a_bits: int, w_granularity: str, group_size: Any, w_zero_point: Any,
                 a_mode: Any) -> None:
    """The rules that tie a format's fields together (bits themselves are checked by the caller).

    * ``group_size`` is None or an integer >= 1, and is given exactly with ``per_group``
      granularity, except that ``per_group`` alone (None) keeps its old meaning: the
      profile's ``capabilities.group_size``;
    * ``w_zero_point`` is a bool; ``a_mode`` one of :data:`A_MODES`;
    * a weight-only candidate (``a_bits == 16``) is static; per-token activations need
      ``a_bits`` below 16;
    * 16-bit weights (keep in 16-bit) have no group and no zero point.
    """
    if group_size is not None:
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise rule_error(where, "group_size", "an integer >= 1 (weights per scale along the input features) "
                             "or None", group_size)
        if w_granularity != "per_group":
            raise rule_error(where, "w_granularity", f"per_group when group_size is given ({group_size})",
                             w_granularity)
    if not isinstance(w_zero_point, bool):
        raise rule_error(where, "w_zero_point", "a bool", w_zero_point)
    if a_mode not in A_MODES:
        raise rule_error(where, "a_mode", f"one of {', '.join(A_MODES)}", a_mode)
    if a_mode == "dynamic_per_token" and a_bits == FLOAT_A_BITS:
        raise rule_error(where, "a_mode", "static when a_bits is 16 (weight-only: activations stay float)", a_mode)
    if w_bits == 16 and (group_size is not None or w_zero_point):
        raise rule_error(where, "group_size and w_zero_point", "unset when w_bits is 16 (the layer stays 16-bit "
                         "float)", {"group_size": group_size, "w_zero_point": w_zero_point})


def is_format(a_bits: int, group_size: int | None, w_zero_point: bool, a_mode: str) -> bool:
    """True for an LLM format (16-bit activations, a group, a zero point or per-token), not a plain pair."""
    return a_bits == FLOAT_A_BITS or group_size is not None or w_zero_point or a_mode != "static"


def format_fields(obj: Any) -> dict[str, Any]:
    """The non-default format fields of a Candidate or LayerBits (what YAML/JSON records add)."""
    out: dict[str, Any] = {}
    if getattr(obj, "group_size", None) is not None:
        out["group_size"] = obj.group_size
    if getattr(obj, "w_zero_point", False):
        out["w_zero_point"] = True
    if getattr(obj, "a_mode", "static") != "static":
        out["a_mode"] = obj.a_mode
    if getattr(obj, "method", DEFAULT_METHOD) != DEFAULT_METHOD:
        out["method"] = obj.method
    return out
