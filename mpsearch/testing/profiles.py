"""Contract every hardware profile must pass (shipped ones and users' own).

    from mpsearch.testing.profiles import check_profile
    check_profile("hw_profiles/my-npu.yaml")      # raises ContractFailure listing what broke

or, in pytest, one test per check::

    @pytest.mark.parametrize("check", sorted(PROFILE_CHECKS))
    def test_my_profile(check):
        run_check(check, load_profile("my-npu"))

The checks: the profile round-trips through ``write_profile``; its capabilities are valid
and leave a pair for every op kind; size never grows when bits shrink, BOPs never grow
when either width shrinks; LUT keys parse, are allowed pairs, and a layer built from each
LUT signature gets exactly that measured latency back; roofline rates and latencies are
positive and finite; every probe layer (conv1d, conv2d, depthwise, linear) gets candidates
as a first, middle and last layer, and rules are honoured; the source is stated; every LLM
format the profile lists (``capabilities.formats``) is a candidate of a probe linear and
embedding layer with its honest size (packed weights + scales + zero points + bias in the
scale dtype), BOPs ``MACs x w x a``, and a finite positive latency.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Callable

from mpsearch.core.profile import GRANULARITIES, MODES, SCALE_KINDS, HardwareProfile
from mpsearch.core.types import LAYER_KINDS, VALID_BITS, Candidate, Layer
from mpsearch.errors import MpsearchError
from mpsearch.hardware import (
    candidates_for,
    layer_costs,
    layer_from_signature,
    layer_signature,
    load_profile,
    size_bytes,
    write_profile,
)
from mpsearch.hardware._check import parse_pair_key
from mpsearch.hardware.schema import SOURCE_KINDS, all_allowed_pairs, profile_to_dict


class ContractFailure(AssertionError):
    """A profile broke the contract; the message names the profile and the check."""


def _fail(profile: HardwareProfile, check: str, message: str) -> ContractFailure:
    return ContractFailure(f"{profile.path or profile.name}: contract {check!r}: {message}")


def probe_layers() -> list[Layer]:
    """Small layers of every kind (small enough for a 320 KB SRAM limit), with bias."""
    return [
        Layer(name="probe.conv2d", kind="conv2d", weight_shape=(32, 32, 3, 3), n_params=32 * 32 * 9 + 32,
              macs=16 * 16 * 32 * 32 * 9, input_shape=(1, 32, 16, 16), output_shape=(1, 32, 16, 16),
              index=1, has_bias=True, in_channels=32, out_channels=32, kernel_size=(3, 3), stride=(1, 1),
              padding=(1, 1)),
        Layer(name="probe.depthwise", kind="depthwise_conv2d", weight_shape=(32, 1, 3, 3), n_params=32 * 9 + 32,
              macs=16 * 16 * 32 * 9, input_shape=(1, 32, 16, 16), output_shape=(1, 32, 16, 16), index=2,
              has_bias=True, in_channels=32, out_channels=32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1),
              groups=32),
        Layer(name="probe.conv1d", kind="conv1d", weight_shape=(16, 16, 3), n_params=16 * 16 * 3 + 16,
              macs=64 * 16 * 16 * 3, input_shape=(1, 16, 64), output_shape=(1, 16, 64), index=3, has_bias=True,
              in_channels=16, out_channels=16, kernel_size=(3,), stride=(1,), padding=(1,)),
        Layer(name="probe.linear", kind="linear", weight_shape=(10, 256), n_params=10 * 256 + 10, macs=2560,
              input_shape=(1, 256), output_shape=(1, 10), index=4, has_bias=True, in_channels=256,
              out_channels=10),
    ]


def check_round_trip(p: HardwareProfile) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".yaml", ".json"):
            path = write_profile(p, Path(tmp) / f"{p.name}{suffix}")
            q = load_profile(path)
            if dataclasses.replace(q, path=None) != dataclasses.replace(p, path=None):
                raise _fail(p, "round_trip", f"reading back {suffix} gives a different profile")
            if profile_to_dict(q) != profile_to_dict(p):
                raise _fail(p, "round_trip", f"reading back {suffix} gives different data")


def check_capabilities(p: HardwareProfile) -> None:
    c = p.capabilities
    for bits in (c.weight_bits, c.activation_bits):
        if not bits or any(b not in VALID_BITS for b in bits):
            raise _fail(p, "capabilities", f"bit-widths must be non-empty and in {VALID_BITS}, got {bits}")
    if c.scale not in SCALE_KINDS or c.weight_mode not in MODES or c.activation_mode not in MODES:
        raise _fail(p, "capabilities", f"scale/mode out of range: {c.scale}, {c.weight_mode}, {c.activation_mode}")
    if not c.weight_granularity or any(g not in GRANULARITIES for g in c.weight_granularity):
        raise _fail(p, "capabilities", f"weight_granularity must be in {GRANULARITIES}, got {c.weight_granularity}")
    if c.integer_only and c.scale == "float":
        raise _fail(p, "capabilities", "integer_only with float scales")
    for op in LAYER_KINDS:
        if not c.allowed_pairs(op):
            raise _fail(p, "capabilities", f"no (w, a) pair is allowed for {op}")
    allowed = all_allowed_pairs(c)
    for rule in (p.rules.first_layer, p.rules.last_layer):
        if rule is not None and rule not in allowed:
            raise _fail(p, "capabilities", f"rule pair {rule} is not allowed for any op")


def check_size_monotone(p: HardwareProfile) -> None:
    c = p.capabilities
    wbits = sorted({b for op in (None, *LAYER_KINDS) for b, _ in c.allowed_pairs(op)})
    for layer in probe_layers():
        for gran in c.weight_granularity:
            sizes = [size_bytes(layer, Candidate(w, 8, gran), p) for w in wbits]
            if any(a > b for a, b in zip(sizes, sizes[1:])):
                raise _fail(p, "size_monotone", f"{layer.name} {gran}: sizes {sizes} for w_bits {wbits} "
                                                f"grow as bits shrink")
        pairs = c.allowed_pairs(layer.kind)
        g = c.weight_granularity[0]
        bops = {q: layer_costs(layer, Candidate(*q, g), p).bops for q in pairs}
        for q1 in pairs:
            for q2 in pairs:
                if q1[0] <= q2[0] and q1[1] <= q2[1] and bops[q1] > bops[q2]:
                    raise _fail(p, "size_monotone", f"{layer.name}: bops {q1}={bops[q1]} > {q2}={bops[q2]}")


def check_lut_keys(p: HardwareProfile) -> None:
    for i, e in enumerate(p.cost.lut):
        allowed = p.capabilities.allowed_pairs(e.op)
        layer = layer_from_signature(e.op, e.shape, name=f"lut[{i}]")
        if layer_signature(layer) != (e.op, dict(e.shape)):
            raise _fail(p, "lut_keys", f"lut[{i}]: signature does not survive a round trip through a Layer")
        for key, stat in e.latency_ms.items():
            fmts = p.capabilities.formats
            if fmts is not None and fmts.runs(key, e.op):  # a measured LLM format (w4a16g128)
                cost = layer_costs(layer, Candidate.parse(key), p)
                if cost.latency_source != "lut" or cost.latency_ms != stat.mean:
                    raise _fail(p, "lut_keys", f"lut[{i}] {key}: a layer of that signature got {cost.latency_ms} "
                                               f"ms from {cost.latency_source}, not the measured {stat.mean} ms")
                continue
            try:
                pair = parse_pair_key(key)
            except MpsearchError as exc:
                raise _fail(p, "lut_keys", f"lut[{i}]: key {key!r} does not parse: {exc}") from None
            if pair not in allowed:
                raise _fail(p, "lut_keys", f"lut[{i}]: pair {key} is not allowed for {e.op}")
            cost = layer_costs(layer, Candidate(*pair, p.capabilities.weight_granularity[0]), p)
            if cost.latency_source != "lut" or cost.latency_ms != stat.mean:
                raise _fail(p, "lut_keys", f"lut[{i}] {key}: a layer of that signature got {cost.latency_ms} ms "
                                           f"from {cost.latency_source}, not the measured {stat.mean} ms")


def check_roofline_positive(p: HardwareProfile) -> None:
    rl = p.cost.roofline
    if rl is None:
        raise _fail(p, "roofline_positive", "no roofline")
    rates = [*rl.ops_per_s.values(), rl.bytes_per_s]
    if not all(math.isfinite(r) and r > 0 for r in rates) or not (math.isfinite(rl.overhead_ms) and rl.overhead_ms >= 0):
        raise _fail(p, "roofline_positive", f"rates must be finite and > 0, overhead >= 0: {rl}")
    for layer in probe_layers():
        for pair in p.capabilities.allowed_pairs(layer.kind):
            cost = layer_costs(layer, Candidate(*pair, p.capabilities.weight_granularity[0]), p)
            if not (math.isfinite(cost.latency_ms) and cost.latency_ms > 0):
                raise _fail(p, "roofline_positive", f"{layer.name} {pair}: latency {cost.latency_ms}")
            if cost.energy_uj is not None and not (math.isfinite(cost.energy_uj) and cost.energy_uj >= 0):
                raise _fail(p, "roofline_positive", f"{layer.name} {pair}: energy {cost.energy_uj}")


def check_candidates(p: HardwareProfile) -> None:
    for layer in probe_layers():
        allowed = p.capabilities.allowed_pairs(layer.kind)
        for first, last in ((False, False), (True, False), (False, True)):
            try:
                cands = candidates_for(layer, p, first=first, last=last)
            except MpsearchError as exc:
                raise _fail(p, "candidates", f"{layer.name} (first={first}, last={last}): {exc}") from None
            if not cands or any((c.w_bits, c.a_bits) not in allowed for c in cands):
                raise _fail(p, "candidates", f"{layer.name}: candidates {cands} not within {allowed}")
            rule = p.rules.first_layer if first else p.rules.last_layer if last else None
            if rule is not None and [(c.w_bits, c.a_bits) for c in cands] != [rule]:
                raise _fail(p, "candidates", f"{layer.name}: rule {rule} not applied, got {cands}")


def _format_probes() -> list[Layer]:
    """A linear layer on 8 tokens and an embedding, 1024 inputs wide (every group size divides it)."""
    return [Layer(name="probe.llm_linear", kind="linear", weight_shape=(16, 1024), n_params=16 * 1024 + 16,
                  macs=8 * 16 * 1024, input_shape=(1, 8, 1024), output_shape=(1, 8, 16), index=5, has_bias=True,
                  in_channels=1024, out_channels=16),
            Layer(name="probe.embedding", kind="embedding", weight_shape=(16, 1024), n_params=16 * 1024, macs=0,
                  input_shape=(1, 8), output_shape=(1, 8, 1024), index=0)]


def check_formats(p: HardwareProfile) -> None:
    fmts = p.capabilities.formats
    if fmts is None:
        return
    for layer in _format_probes():
        if layer.kind not in fmts.ops:
            continue
        out_f, in_f = layer.weight_shape
        n_bias = layer.n_params - layer.n_weights
        for key in fmts.keys:
            try:
                (cand,) = candidates_for(layer, p, formats=[key])
                cost = layer_costs(layer, cand, p)
            except (MpsearchError, ValueError) as exc:
                raise _fail(p, "formats", f"{layer.name}: format {key}: {exc}") from None
            if cand.key != key:
                raise _fail(p, "formats", f"{layer.name}: format {key} became candidate {cand.key}")
            if cand.w_bits == 16:
                want = 2 * layer.n_weights + fmts.scale_bytes * n_bias
            else:
                n_scales = out_f * (in_f // cand.group_size if cand.group_size else 1)
                want = (math.ceil(layer.n_weights * cand.w_bits / 8)
                        + fmts.scale_bytes * (n_scales * (2 if cand.w_zero_point else 1) + n_bias))
            if cost.size_bytes != want:
                raise _fail(p, "formats", f"{layer.name} {key}: size {cost.size_bytes} bytes, not the honest {want}")
            if cost.bops != layer.macs * cand.w_bits * cand.a_bits:
                raise _fail(p, "formats", f"{layer.name} {key}: bops {cost.bops} != MACs x w x a")
            if not (math.isfinite(cost.latency_ms) and cost.latency_ms > 0):
                raise _fail(p, "formats", f"{layer.name} {key}: latency {cost.latency_ms}")


def check_source(p: HardwareProfile) -> None:
    if p.source.get("kind") not in SOURCE_KINDS:
        raise _fail(p, "source", f"source.kind must be one of {SOURCE_KINDS}")
    if not str(p.source.get("notes", "")).strip() or not p.description.strip():
        raise _fail(p, "source", "source.notes and description must say where the numbers come from")


#: check name -> function(profile); raises ContractFailure.
PROFILE_CHECKS: dict[str, Callable[[HardwareProfile], None]] = {
    "round_trip": check_round_trip,
    "capabilities": check_capabilities,
    "size_monotone": check_size_monotone,
    "lut_keys": check_lut_keys,
    "roofline_positive": check_roofline_positive,
    "candidates": check_candidates,
    "formats": check_formats,
    "source": check_source,
}


def run_check(name: str, profile: HardwareProfile | str) -> None:
    """Run one named check on a profile (or a name / path, loaded first)."""
    from mpsearch.errors import unknown_name

    if name not in PROFILE_CHECKS:
        raise unknown_name("profile check", name, PROFILE_CHECKS)
    PROFILE_CHECKS[name](load_profile(profile))


def check_profile(profile: HardwareProfile | str) -> HardwareProfile:
    """Load ``profile`` and run every check; raise one ContractFailure listing all failures."""
    p = load_profile(profile)
    failures = []
    for fn in PROFILE_CHECKS.values():
        try:
            fn(p)
        except (ContractFailure, MpsearchError) as exc:
            failures.append(str(exc))
    if failures:
        raise ContractFailure("\n".join(failures))
    return p
