"""``capabilities.formats`` of a profile: the LLM weight formats a device runs, strictly checked.

Schema (all of it optional; a profile without it offers no formats)::

    capabilities:
      formats:
        keys: [w4a16g128, w4a16g128z, w8a16, w8a8t, w16a16]   # format keys, see mpsearch.core.formats
        ops: [linear, embedding]                                # layer kinds that take them (default both)
        scale_dtype: float16                                    # float16 | bfloat16 | float32
    cost:
      roofline:
        float_ops_per_s: 2.0e+10     # optional: 16-bit float rate of weight-only formats

Rules (each error names the file, the dotted key, the rule and the value):

* a key is a format, not a plain pair (a plain pair belongs in ``weight_bits`` / ``pairs``):
  16-bit activations, a group size, a zero point, or per-token activations;
* weight bits are 2, 3, 4, 8 or 16 (16 only as ``w16a16``, keep in 16-bit); a group size is a
  power of two in 16..1024;
* a per-token format (``...t``) runs on the integer path, so its (w_bits, a_bits) pair is one
  the capabilities allow for linear layers;
* no key is listed twice;
* a LUT latency key (``cost.lut[i].latency_ms``) is a pair the capabilities allow for the
  entry's op, or a format listed here for that op (a measured format, :func:`lut_stat_key`).
"""

from __future__ import annotations

from typing import Any

from mpsearch.core.formats import FORMAT_W_BITS, KEY_RULE, is_format, parse_format_key
from mpsearch.core.profile import FORMAT_OPS, SCALE_DTYPE_BYTES, Capabilities, FormatCapabilities
from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError
from mpsearch.hardware._check import Reader, pair_key

GROUP_SIZE_RULE = "a power of two in 16..1024"


def _group_ok(g: int | None) -> bool:
    return g is None or (16 <= g <= 1024 and g & (g - 1) == 0)


def parse_formats(r: Reader, data: Any, caps: Capabilities, key: str = "capabilities.formats") -> FormatCapabilities:
    """Check ``capabilities.formats`` and build its :class:`FormatCapabilities`."""
    f = r.mapping(data, key, ("keys", "ops", "scale_dtype"), required=("keys",))
    raw = f["keys"]
    if not isinstance(raw, list) or not raw:
        raise r.fail(f"{key}.keys", "a non-empty list of format keys such as [w4a16g128, w8a8t]", raw)
    keys: list[str] = []
    linear_pairs = set(caps.allowed_pairs("linear"))
    for i, value in enumerate(raw):
        k = f"{key}.keys[{i}]"
        try:
            c = Candidate.parse(value, r.where)
        except ConfigError:
            raise r.fail(k, KEY_RULE, value) from None
        if not is_format(c.a_bits, c.group_size, c.w_zero_point, c.a_mode):
            raise r.fail(k, "a format (16-bit activations, a group size, a zero point or per-token activations); "
                         "plain pairs belong in capabilities.weight_bits / pairs", value)
        if c.w_bits not in FORMAT_W_BITS:
            raise r.fail(k, f"a format with weight bits in {list(FORMAT_W_BITS)}", value)
        if c.w_bits == 16 and c.a_bits != 16:
            raise r.fail(k, "w16a16 when the weights are 16-bit (keep in 16-bit)", value)
        if not _group_ok(c.group_size):
            raise r.fail(k, f"a format whose group size is {GROUP_SIZE_RULE}", value)
        if c.a_mode == "dynamic_per_token" and (c.w_bits, c.a_bits) not in linear_pairs:
            raise r.fail(k, f"a per-token format whose pair w{c.w_bits}a{c.a_bits} the capabilities allow for linear "
                         "layers (it runs on the integer path)", value)
        if c.key in keys:
            raise r.fail(f"{key}.keys", "a list without repeated formats", raw)
        keys.append(c.key)
    ops = f.get("ops", list(FORMAT_OPS))
    if not isinstance(ops, list) or not ops:
        raise r.fail(f"{key}.ops", "a non-empty list of " + ", ".join(FORMAT_OPS), ops)
    op_kinds = tuple(r.choice(o, f"{key}.ops[{i}]", FORMAT_OPS) for i, o in enumerate(ops))
    if len(set(op_kinds)) != len(op_kinds):
        raise r.fail(f"{key}.ops", "a list without repeats", ops)
    scale_dtype = r.choice(f.get("scale_dtype", "float16"), f"{key}.scale_dtype", tuple(SCALE_DTYPE_BYTES))
    return FormatCapabilities(keys=tuple(keys), ops=op_kinds, scale_dtype=scale_dtype)


def lut_stat_key(r: Reader, k: Any, key: str, op: str, allowed: Any, caps: Capabilities) -> str:
    """A LUT latency key (``cost.lut[i].latency_ms``): a pair allowed for ``op``, or a format listed for it."""
    fmts = caps.formats
    if isinstance(k, str) and fmts is not None and k in fmts.keys:
        if not fmts.runs(k, op):
            raise r.fail(f"{key}.{k}", f"a format capabilities.formats lists for {op} (its ops: "
                         f"{', '.join(fmts.ops)})", k)
        return k
    if isinstance(k, str) and _is_format_key(k):  # a format the profile does not list
        listed = ", ".join(fmts.keys) if fmts is not None else "none listed"
        raise r.fail(f"{key}.{k}", f"a pair the capabilities allow for {op} or a format listed in "
                     f"capabilities.formats ({listed})", k)
    pair = r.pair_key(k, f"{key} key")
    if pair not in allowed:
        raise r.fail(f"{key}.{k}", f"a pair the capabilities allow for {op} (" +
                     ", ".join(pair_key(*p) for p in allowed) + ")", k)
    return pair_key(*pair)


def _is_format_key(k: str) -> bool:
    try:
        f = parse_format_key(k)
    except ConfigError:
        return False
    return is_format(f["a_bits"], f["group_size"], f["w_zero_point"], f["a_mode"])


def formats_to_dict(formats: FormatCapabilities) -> dict[str, Any]:
    """Plain data that :func:`parse_formats` reads back into an equal value."""
    return {"keys": list(formats.keys), "ops": list(formats.ops), "scale_dtype": formats.scale_dtype}
