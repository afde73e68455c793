"""Cost of one layer at one candidate on one device: size, BOPs, latency (+ energy, memory).

Definitions (units in the names):

* ``size_bytes`` = ``ceil(n_weights * w_bits / 8)`` (weights packed at w_bits)
  + ``n_scales * scale_bytes`` + zero-points + ``4 * n_bias`` (bias is int32).
  ``n_scales`` is ``cout`` per_channel, 1 per_tensor, ``cout * ceil(fan_in / group_size)``
  per_group. ``scale_bytes`` by scale kind: float 4 (float32), dyadic 5 (int32 multiplier +
  int8 shift), power_of_two 1 (int8 exponent). Asymmetric weights add one zero-point per
  scale of ``ceil(w_bits / 8)`` bytes (a zero-point lives in the weights' own range).
  Activation scales are folded into the per-channel requantization multipliers and add
  nothing here.
* LLM formats (``Candidate.is_format``: weight-only, grouped, zero point, per-token; see
  :mod:`mpsearch.core.formats`) store honestly: ``ceil(n_weights * w_bits / 8)`` + one scale
  per output channel, or per group of ``group_size`` input features, + a zero point per scale
  when ``w_zero_point``, + the bias, each scale, zero point and bias element in the profile's
  ``formats.scale_dtype`` (float16: 2 bytes). 4-bit, group 128: ``4 + 16/128 = 4.125`` bits per
  weight; with zero points ``4.25``. ``w16a16`` is 2 bytes per weight and no scales.
* ``bops`` = MACs per example x w_bits x a_bits (weight-only: a_bits = 16).
* ``latency_ms``: the LUT mean when the layer's signature and the (w, a) pair are measured
  (``latency_source="lut"``); otherwise the roofline (``"roofline"``):
  ``max(ops / ops_per_s[pair], bytes / bytes_per_s) * 1e3 + overhead_ms`` with
  ``ops = 2 * MACs * n_examples`` (one MAC = a multiply and an add) and
  ``bytes = weight bytes at w_bits + input and output activations at a_bits``.
  A pair without its own ``ops_per_s`` uses the nearest wider pair (no speed-up is assumed
  for a pair the device has no faster kernel for). Weight-only and 16-bit formats run at
  ``cost.roofline.float_ops_per_s`` (else the slowest rate) and move their honest weight bytes
  and 16-bit activations; per-token formats use their integer pair's rate.
* ``energy_uj`` (profiles with ``cost.energy``): ``active_mw * latency_ms +
  (ops * pj_per_op[pair] + bytes * pj_per_byte) * 1e-6``, same pair fallback.
* ``activation_bytes``: the layer's working set, input + output at a_bits. It is a per-layer
  peak to compare with ``cost.memory.activation_bytes`` (SRAM), not a sum over layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from mpsearch.core.profile import HardwareProfile, LutEntry
from mpsearch.core.types import Candidate, Layer
from mpsearch.errors import ConfigError
from mpsearch.hardware._check import pair_key, parse_pair_key
from mpsearch.hardware.signature import SignatureKey, layer_signature, n_examples, signature_key

#: bytes one scale takes in storage, by ``capabilities.scale``.
SCALE_BYTES = {"float": 4, "dyadic": 5, "power_of_two": 1}
BIAS_BYTES = 4  # int32 bias with scale S_w * S_a


@dataclass(frozen=True)
class LayerCost:
    """What one layer costs at one candidate.

    Attributes:
        size_bytes: weights + scales + zero-points + bias, in bytes.
        bops: bit-operations per example (MACs x w_bits x a_bits).
        latency_ms: for ``n_examples`` examples.
        latency_source: "lut" (measured) or "roofline" (analytic).
        latency_std_ms: standard deviation of the measurement (0 for the roofline).
        bound: "lut", "compute" or "memory" (which roofline term won).
        ops: 2 x MACs x n_examples.
        bytes_moved: weights + input + output activations, in bytes (the roofline's bytes).
        activation_bytes: input + output activations at a_bits (per-layer working set).
        energy_uj: energy in microjoules, or None when the profile has no energy model.
        n_examples: examples the latency (and ops, bytes) are for.
    """

    size_bytes: int
    bops: int
    latency_ms: float
    latency_source: str
    latency_std_ms: float = 0.0
    bound: str = "compute"
    ops: float = 0.0
    bytes_moved: int = 0
    activation_bytes: int = 0
    energy_uj: float | None = None
    n_examples: int = 1

    def resources(self) -> dict[str, float]:
        """Additive resources for a cost table: size_bytes, bops, latency_ms (+ energy_uj)."""
        out = {"size_bytes": float(self.size_bytes), "bops": float(self.bops), "latency_ms": self.latency_ms}
        if self.energy_uj is not None:
            out["energy_uj"] = self.energy_uj
        return out


def rate_for_pair(table: Mapping[str, float], w_bits: int, a_bits: int) -> tuple[str, float]:
    """The entry of a pair-keyed table for ``(w_bits, a_bits)``: exact, else nearest wider.

    "Wider" means ``w' >= w_bits`` and ``a' >= a_bits``; nearest minimises
    ``(w' - w) + (a' - a)``; ties go to the smaller value (the slower rate, the conservative
    choice). Raises ConfigError when no entry is as wide (profiles are checked for that).
    """
    key = pair_key(w_bits, a_bits)
    if key in table:
        return key, table[key]
    best: tuple[int, float, str] | None = None
    for k, v in table.items():
        w, a = parse_pair_key(k)
        if w >= w_bits and a >= a_bits:
            cand = ((w - w_bits) + (a - a_bits), v, k)
            if best is None or cand[:2] < best[:2]:
                best = cand
    if best is None:
        raise ConfigError(f"rate table must have an entry for {key} or a wider pair, but has {sorted(table)}")
    return best[2], best[1]


def n_scales(layer: Layer, granularity: str, group_size: int = 128) -> int:
    """How many weight scales the layer stores at ``granularity``."""
    cout = int(layer.weight_shape[0]) if layer.weight_shape else 1
    if granularity == "per_tensor":
        return 1
    if granularity == "per_group":
        fan_in = layer.n_weights // max(cout, 1)
        return cout * math.ceil(fan_in / group_size)
    return cout


def format_size_bytes(layer: Layer, candidate: Candidate, scale_bytes: int = 2) -> int:
    """Honest stored size of an LLM format: packed weights + scales + zero points + bias.

    ``scale_bytes`` is the size of one scale, zero point and bias element (float16: 2).
    """
    n_bias = max(layer.n_params - layer.n_weights, 0)
    if candidate.w_bits == 16:  # keep in 16-bit: no scales
        return 2 * layer.n_weights + scale_bytes * n_bias
    weights = math.ceil(layer.n_weights * candidate.w_bits / 8)
    if candidate.group_size is not None:
        scales = n_scales(layer, "per_group", candidate.group_size)
    else:
        scales = n_scales(layer, candidate.w_granularity)
    zero_points = scales if candidate.w_zero_point else 0
    return weights + (scales + zero_points + n_bias) * scale_bytes


def bias_bytes(layer: Layer, candidate: Candidate, profile: HardwareProfile) -> int:
    """Bytes of the layer's bias alone: int32 for integer pairs, the scale dtype for formats."""
    n_bias = max(layer.n_params - layer.n_weights, 0)
    fmts = profile.capabilities.formats
    return n_bias * ((fmts.scale_bytes if fmts else 2) if candidate.is_format else BIAS_BYTES)


def size_bytes(layer: Layer, candidate: Candidate, profile: HardwareProfile) -> int:
    """Stored size of the layer at ``candidate`` on ``profile`` (see module docstring)."""
    caps = profile.capabilities
    if candidate.is_format:
        return format_size_bytes(layer, candidate, caps.formats.scale_bytes if caps.formats else 2)
    weights = math.ceil(layer.n_weights * candidate.w_bits / 8)
    scales = n_scales(layer, candidate.w_granularity, caps.group_size)
    zero_points = scales * math.ceil(candidate.w_bits / 8) if caps.weight_mode == "asymmetric" else 0
    n_bias = max(layer.n_params - layer.n_weights, 0)
    return weights + scales * SCALE_BYTES[caps.scale] + zero_points + BIAS_BYTES * n_bias


def activation_bytes(layer: Layer, a_bits: int, batch: int | None = None) -> int:
    """Input + output activations of ``n_examples`` examples at ``a_bits``, in bytes."""
    n = n_examples(layer, batch)
    in_elems = math.prod(layer.input_shape[1:]) * n
    out_elems = math.prod(layer.output_shape[1:]) * n
    return math.ceil(in_elems * a_bits / 8) + math.ceil(out_elems * a_bits / 8)


def roofline_work(layer: Layer, candidate: Candidate, batch: int | None = None,
                  profile: HardwareProfile | None = None) -> tuple[float, int]:
    """``(ops, bytes)`` the roofline charges: ``2 * MACs * n`` and weights + activations.

    A format's weights count at their honest size (scales and zero points included).
    """
    n = n_examples(layer, batch)
    if candidate.is_format:
        weights = size_bytes(layer, candidate, profile) if profile is not None else format_size_bytes(layer, candidate)
    else:
        weights = math.ceil(layer.n_weights * candidate.w_bits / 8)
    return 2.0 * layer.macs * n, weights + activation_bytes(layer, candidate.a_bits, batch)


def _lut_index(profile: HardwareProfile) -> dict[SignatureKey, LutEntry]:
    """Signature -> entry, built once per profile and kept on its (frozen) cost model."""
    cost = profile.cost
    index = cost.__dict__.get("_lut_index")
    if index is None:
        index = {signature_key(e.op, e.shape): e for e in cost.lut}
        object.__setattr__(cost, "_lut_index", index)
    return index


def lut_entry_for(layer: Layer, profile: HardwareProfile, batch: int | None = None) -> LutEntry | None:
    """The LUT entry whose signature equals the layer's, or None (always for an embedding: a lookup has none)."""
    if not profile.cost.lut or layer.kind == "embedding":
        return None
    op, shape = layer_signature(layer, batch)
    return _lut_index(profile).get(signature_key(op, shape))


def layer_costs(layer: Layer, candidate: Candidate, profile: HardwareProfile | str,
                batch: int | None = None) -> LayerCost:
    """Cost of ``layer`` at ``candidate`` on ``profile``.

    Args:
        layer: the layer (shapes as recorded by ``discover``).
        candidate: its bits; the pair must be one the device runs for this op kind.
        profile: a profile, or a name / path for :func:`load_profile`.
        batch: examples per run for latency (default: the layer's recorded batch).

    Raises:
        ConfigError: when the device does not run ``candidate`` (pair or granularity) for the
            layer's op.
    """
    if not isinstance(profile, HardwareProfile):
        from mpsearch.hardware.loader import load_profile

        profile = load_profile(profile)
    pair = (candidate.w_bits, candidate.a_bits)
    allowed = profile.capabilities.allowed_pairs(layer.kind)
    if candidate.is_format:
        _check_format(layer, candidate, profile)
    elif pair not in allowed:
        raise ConfigError(
            f"{profile.name}: candidate for layer {layer.name!r} ({layer.kind}) must be a pair the device runs "
            f"({', '.join(pair_key(*p) for p in allowed)}), but got {candidate.key!r}")
    if not candidate.is_format and candidate.w_granularity not in profile.capabilities.weight_granularity:
        raise ConfigError(f"{profile.name}: weight granularity of layer {layer.name!r} must be one of "
                          f"{', '.join(profile.capabilities.weight_granularity)}, but got {candidate.w_granularity!r}")
    n = n_examples(layer, batch)
    ops, moved = roofline_work(layer, candidate, batch, profile)
    entry = lut_entry_for(layer, profile, batch)
    stat = entry.latency_ms.get(candidate.key) if entry is not None else None
    rl = profile.cost.roofline
    if stat is not None:
        latency, source, std, bound = stat.mean, "lut", stat.std, "lut"
    elif rl is not None:
        rate = _format_rate(rl, candidate) if candidate.is_format else rate_for_pair(rl.ops_per_s, *pair)[1]
        compute_s, memory_s = ops / rate, moved / rl.bytes_per_s
        latency = max(compute_s, memory_s) * 1e3 + rl.overhead_ms
        source, std, bound = "roofline", 0.0, ("compute" if compute_s >= memory_s else "memory")
    else:
        raise ConfigError(f"{profile.name}: cost.roofline must be given to cost unmeasured layers, but got None")
    energy = None
    en = profile.cost.energy
    if en is not None:
        if not en.pj_per_op:
            pj_op = 0.0
        elif candidate.weight_only:  # a 16-bit float op: the dearest listed op (no saving assumed)
            pj_op = max(en.pj_per_op.values())
        else:
            pj_op = rate_for_pair(en.pj_per_op, *pair)[1]
        energy = en.active_mw * latency + (ops * pj_op + moved * en.pj_per_byte) * 1e-6
    return LayerCost(
        size_bytes=size_bytes(layer, candidate, profile),
        bops=int(layer.macs) * candidate.w_bits * candidate.a_bits,
        latency_ms=float(latency), latency_source=source, latency_std_ms=float(std), bound=bound,
        ops=ops, bytes_moved=moved, activation_bytes=activation_bytes(layer, candidate.a_bits, batch),
        energy_uj=energy, n_examples=n,
    )


def _check_format(layer: Layer, candidate: Candidate, profile: HardwareProfile) -> None:
    """A format must be one the profile runs for the layer's kind, with a group size that divides the inputs."""
    fmts = profile.capabilities.formats
    if fmts is None or not fmts.runs(candidate.key, layer.kind):
        listed = f"({', '.join(fmts.keys)} for {', '.join(fmts.ops)})" if fmts is not None else "(it lists none)"
        raise ConfigError(f"{profile.name}: candidate for layer {layer.name!r} ({layer.kind}) must be a format the "
                          f"profile runs {listed}, but got {candidate.key!r}")
    check_group_divides(layer, candidate, profile.name)


def check_group_divides(layer: Layer, candidate: Candidate, where: str) -> None:
    """Raise when ``candidate``'s group size does not divide the layer's input features."""
    g = candidate.group_size
    fan_in = layer.n_weights // max(int(layer.weight_shape[0]) if layer.weight_shape else 1, 1)
    if g is not None and fan_in % g:
        raise ConfigError(f"{where}: layer {layer.name!r} ({layer.kind}): group size of {candidate.key} must divide "
                          f"the layer's {fan_in} input features, but got {g}")


def _format_rate(rl: Any, candidate: Candidate) -> float:
    """ops/s of a format: the float rate for weight-only / 16-bit, the integer pair's rate for per-token."""
    if candidate.weight_only:
        return rl.float_ops_per_s if rl.float_ops_per_s is not None else min(rl.ops_per_s.values())
    return rate_for_pair(rl.ops_per_s, candidate.w_bits, candidate.a_bits)[1]


def profile_budgets(profile: HardwareProfile) -> dict[str, Any]:
    """Budgets a profile implies: ``{"size_bytes": cost.memory.weight_bytes}`` when set."""
    mem = profile.cost.memory
    return {"size_bytes": mem.weight_bytes} if mem is not None and mem.weight_bytes is not None else {}
