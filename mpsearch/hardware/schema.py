"""Profile schema (``version: 1``): plain data <-> :class:`HardwareProfile`, strictly checked.

The layout is the team design's ("Hardware profiles"). Additions over that sketch, all
optional: ``source.references`` (list of strings) and ``source.machine``;
``capabilities.group_size`` (weights per scale for per_group); ``cost.memory``
(``weight_bytes``, ``activation_bytes``) and ``cost.energy`` (``active_mw``, ``pj_per_op``,
``pj_per_byte``); ``capabilities.formats`` (LLM weight formats, checked in ``hardware/formats.py``) and
``cost.roofline.float_ops_per_s``; ``capabilities.methods`` (weight quantization methods it runs,
default [rtn]: ``hardware/methods.py``). Numbers may be written ``2.0e12`` (PyYAML reads that as a
string; it is accepted when it is a float literal).

Cross-field rules checked here:

* every pair in ``pairs`` uses allowed bits; every op (and the default) has >= 1 allowed pair;
* ``integer_only: true`` needs ``scale`` dyadic or power_of_two;
* ``rules`` pairs are allowed for some op;
* ``cost.roofline.ops_per_s`` (and ``cost.energy.pj_per_op``) keys are allowed pairs, and every
  allowed pair has an entry at least as wide (see :func:`mpsearch.hardware.costs.rate_for_pair`);
* a LUT entry's op is a layer kind, its shape has exactly that op's keys, its keys are pairs
  allowed for that op or formats ``capabilities.formats`` lists for that op (``w4a16g128``: a
  measured format), its latencies are > 0, and no two entries share a signature.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from mpsearch.core.checks import check_int
from mpsearch.core.profile import (
    GRANULARITIES,
    MODES,
    SCALE_KINDS,
    Capabilities,
    CostModel,
    EnergyModel,
    HardwareProfile,
    LatencyStat,
    LutEntry,
    MemoryLimits,
    OpCapabilities,
    Roofline,
    Rules,
)
from mpsearch.core.types import LAYER_KINDS
from mpsearch.hardware._check import Reader, pair_key
from mpsearch.hardware.formats import formats_to_dict, lut_stat_key, parse_formats
from mpsearch.hardware.methods import parse_methods
from mpsearch.hardware.signature import SPATIAL_DIMS, shape_keys, signature_key

VERSION = 1
SOURCE_KINDS = ("measured", "datasheet", "analytic")
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
TOP_KEYS = ("version", "name", "description", "source", "capabilities", "rules", "cost")


def parse_profile(data: Any, where: str = "profile", path: str | None = None) -> HardwareProfile:
    """Check plain data (as read from YAML) and build a :class:`HardwareProfile`.

    Args:
        data: the mapping read from the file.
        where: the file (or source) named in error messages.
        path: stored in ``HardwareProfile.path``.

    Raises:
        ConfigError: naming ``where``, the dotted key, the rule and the value found.
    """
    r = Reader(where)
    top = r.mapping(data, "", TOP_KEYS, required=("version", "name", "description", "source", "capabilities", "cost"))
    check_int(top["version"], r.where, "version", min=VERSION, max=VERSION, rule=f"{VERSION}")
    name = r.string(top["name"], "name", NAME_PATTERN, "a name of letters, digits, '.', '_' or '-' (at most 64)")
    description = r.string(top["description"], "description")
    source = _source(r, top["source"])
    caps = _capabilities(r, top["capabilities"])
    rules = _rules(r, top.get("rules"), caps)
    cost = _cost(r, top["cost"], caps)
    return HardwareProfile(name=name, description=description, source=source, capabilities=caps,
                           rules=rules, cost=cost, path=path)


def _source(r: Reader, data: Any) -> dict[str, Any]:
    src = r.mapping(data, "source", ("kind", "notes", "references", "machine"), required=("kind", "notes"))
    out: dict[str, Any] = {"kind": r.choice(src["kind"], "source.kind", SOURCE_KINDS),
                           "notes": r.string(src["notes"], "source.notes")}
    if "references" in src:
        refs = src["references"]
        if not isinstance(refs, list):
            raise r.fail("source.references", "a list of strings", refs)
        out["references"] = tuple(r.string(x, f"source.references[{i}]") for i, x in enumerate(refs))
    if "machine" in src:
        out["machine"] = r.string(src["machine"], "source.machine")
    return out


def _pairs(r: Reader, value: Any, key: str, wbits: tuple[int, ...], abits: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list) or not value:
        raise r.fail(key, "a non-empty list of [w_bits, a_bits] pairs", value)
    out = []
    for i, p in enumerate(value):
        if not isinstance(p, list) or len(p) != 2:
            raise r.fail(f"{key}[{i}]", "a pair [w_bits, a_bits]", p)
        w, a = r.bits(p[0], f"{key}[{i}][0]"), r.bits(p[1], f"{key}[{i}][1]")
        if w not in wbits or a not in abits:
            raise r.fail(f"{key}[{i}]", f"a pair with w_bits in {list(wbits)} and a_bits in {list(abits)}", p)
        out.append((w, a))
    if len(set(out)) != len(out):
        raise r.fail(key, "a list without repeated pairs", value)
    return tuple(out)


def _capabilities(r: Reader, data: Any) -> Capabilities:
    keys = ("weight_bits", "activation_bits", "pairs", "weight_mode", "weight_granularity",
            "activation_mode", "scale", "integer_only", "per_op", "group_size", "formats", "methods")
    c = r.mapping(data, "capabilities", keys, required=("weight_bits", "activation_bits"))
    wb = r.bits_list(c["weight_bits"], "capabilities.weight_bits")
    ab = r.bits_list(c["activation_bits"], "capabilities.activation_bits")
    pairs = _pairs(r, c["pairs"], "capabilities.pairs", wb, ab) if "pairs" in c else None
    gran = c.get("weight_granularity", ["per_channel", "per_tensor"])
    gran = [gran] if isinstance(gran, str) else gran
    if not isinstance(gran, list) or not gran:
        raise r.fail("capabilities.weight_granularity", "a non-empty list of " + ", ".join(GRANULARITIES), gran)
    granularity = tuple(r.choice(g, f"capabilities.weight_granularity[{i}]", GRANULARITIES) for i, g in enumerate(gran))
    if len(set(granularity)) != len(granularity):
        raise r.fail("capabilities.weight_granularity", "a list without repeats", gran)
    scale = r.choice(c.get("scale", "dyadic"), "capabilities.scale", SCALE_KINDS)
    integer_only = r.boolean(c.get("integer_only", True), "capabilities.integer_only")
    if integer_only and scale == "float":
        raise r.fail("capabilities.scale", "dyadic or power_of_two when integer_only is true", scale)
    per_op: dict[str, OpCapabilities] = {}
    raw_per_op = c.get("per_op", {})
    if not isinstance(raw_per_op, Mapping):
        raise r.fail("capabilities.per_op", "a mapping of op kind -> overrides", raw_per_op)
    for op, over in raw_per_op.items():
        key = f"capabilities.per_op.{op}"
        if op not in LAYER_KINDS:
            raise r.fail("capabilities.per_op", "keyed by op kinds " + ", ".join(LAYER_KINDS), op)
        o = r.mapping(over, key, ("weight_bits", "activation_bits", "pairs"))
        if not o:
            raise r.fail(key, "a mapping with weight_bits, activation_bits or pairs", over)
        owb = r.bits_list(o["weight_bits"], f"{key}.weight_bits") if "weight_bits" in o else None
        oab = r.bits_list(o["activation_bits"], f"{key}.activation_bits") if "activation_bits" in o else None
        opairs = _pairs(r, o["pairs"], f"{key}.pairs", owb or wb, oab or ab) if "pairs" in o else None
        per_op[op] = OpCapabilities(weight_bits=owb, activation_bits=oab, pairs=opairs)
    caps = Capabilities(
        weight_bits=wb, activation_bits=ab, pairs=pairs,
        weight_mode=r.choice(c.get("weight_mode", "symmetric"), "capabilities.weight_mode", MODES),
        weight_granularity=granularity,
        activation_mode=r.choice(c.get("activation_mode", "asymmetric"), "capabilities.activation_mode", MODES),
        scale=scale, integer_only=integer_only, per_op=per_op,
        group_size=r.integer(c.get("group_size", 128), "capabilities.group_size"),
    )
    for op in (None, *per_op):
        if not caps.allowed_pairs(op):
            key = f"capabilities.per_op.{op}" if op else "capabilities.pairs"
            raise r.fail(key, "a set of bits and pairs that leaves at least one (w, a) pair",
                         {"weight_bits": list(caps.per_op[op].weight_bits or wb) if op else list(wb),
                          "pairs": [list(p) for p in (pairs or ())]})
    if "formats" in c:  # LLM weight formats (hardware/formats.py)
        caps = replace(caps, formats=parse_formats(r, c["formats"], caps))
    if "methods" in c:
        caps = replace(caps, methods=parse_methods(r, c["methods"]))
    return caps


def all_allowed_pairs(caps: Capabilities) -> set[tuple[int, int]]:
    """Pairs allowed for at least one op kind."""
    return {p for op in (None, *LAYER_KINDS) for p in caps.allowed_pairs(op)}


def _rules(r: Reader, data: Any, caps: Capabilities) -> Rules:
    if data is None:
        return Rules()
    rules = r.mapping(data, "rules", ("first_layer", "last_layer"))
    allowed = all_allowed_pairs(caps)
    out: dict[str, tuple[int, int]] = {}
    for which in ("first_layer", "last_layer"):
        if which in rules:
            key = f"rules.{which}"
            m = r.mapping(rules[which], key, ("w_bits", "a_bits"), required=("w_bits", "a_bits"))
            pair = (r.bits(m["w_bits"], f"{key}.w_bits"), r.bits(m["a_bits"], f"{key}.a_bits"))
            if pair not in allowed:
                raise r.fail(key, f"a pair the capabilities allow ({', '.join(pair_key(*p) for p in sorted(allowed))})",
                             dict(m))
            out[which] = pair
    return Rules(**out)


def _rates(r: Reader, value: Any, key: str, allowed: set[tuple[int, int]], minimum_strict: bool) -> dict[str, float]:
    """A pair-keyed table of rates; every allowed pair needs an entry at least as wide."""
    if not isinstance(value, Mapping) or not value:
        raise r.fail(key, 'a non-empty mapping of pair key ("w8a8") -> number', value)
    out: dict[str, float] = {}
    for k, v in value.items():
        w, a = r.pair_key(k, f"{key} key")
        if (w, a) not in allowed:
            raise r.fail(f"{key}.{k}", "keyed by a pair the capabilities allow: " +
                         ", ".join(pair_key(*p) for p in sorted(allowed)), k)
        out[pair_key(w, a)] = r.number(v, f"{key}.{k}", 0.0, strict=minimum_strict)
    have = [r.pair_key(k, key) for k in out]
    for w, a in sorted(allowed):
        if not any(hw >= w and ha >= a for hw, ha in have):
            raise r.fail(key, f"given for {pair_key(w, a)} or a wider pair (an allowed pair needs a rate)", sorted(out))
    return out


def _cost(r: Reader, data: Any, caps: Capabilities) -> CostModel:
    c = r.mapping(data, "cost", ("roofline", "lut", "memory", "energy"), required=("roofline",))
    allowed = all_allowed_pairs(caps)
    rl = r.mapping(c["roofline"], "cost.roofline", ("ops_per_s", "bytes_per_s", "overhead_ms", "float_ops_per_s"),
                   required=("ops_per_s", "bytes_per_s"))
    roofline = Roofline(
        ops_per_s=_rates(r, rl["ops_per_s"], "cost.roofline.ops_per_s", allowed, True),
        bytes_per_s=r.number(rl["bytes_per_s"], "cost.roofline.bytes_per_s"),
        overhead_ms=r.number(rl.get("overhead_ms", 0.0), "cost.roofline.overhead_ms", strict=False),
        float_ops_per_s=(r.number(rl["float_ops_per_s"], "cost.roofline.float_ops_per_s")
                         if "float_ops_per_s" in rl else None),
    )
    lut = _lut(r, c.get("lut", []), caps)
    memory = None
    if "memory" in c:
        m = r.mapping(c["memory"], "cost.memory", ("weight_bytes", "activation_bytes"))
        memory = MemoryLimits(**{k: r.integer(v, f"cost.memory.{k}") for k, v in m.items()})
    energy = None
    if "energy" in c:
        e = r.mapping(c["energy"], "cost.energy", ("active_mw", "pj_per_op", "pj_per_byte"))
        if not e:
            raise r.fail("cost.energy", "a mapping with active_mw, pj_per_op or pj_per_byte", dict(e))
        energy = EnergyModel(
            active_mw=r.number(e.get("active_mw", 0.0), "cost.energy.active_mw", strict=False),
            pj_per_op=_rates(r, e["pj_per_op"], "cost.energy.pj_per_op", allowed, False) if "pj_per_op" in e else {},
            pj_per_byte=r.number(e.get("pj_per_byte", 0.0), "cost.energy.pj_per_byte", strict=False),
        )
    return CostModel(roofline=roofline, lut=lut, energy=energy, memory=memory)


def _lut(r: Reader, data: Any, caps: Capabilities) -> tuple[LutEntry, ...]:
    if not isinstance(data, list):
        raise r.fail("cost.lut", "a list of entries {op, shape, latency_ms}", data)
    entries, seen = [], {}
    for i, raw in enumerate(data):
        key = f"cost.lut[{i}]"
        e = r.mapping(raw, key, ("op", "shape", "latency_ms"), required=("op", "shape", "latency_ms"))
        op = r.choice(e["op"], f"{key}.op", LAYER_KINDS)
        shape = _shape(r, e["shape"], f"{key}.shape", op)
        lat = e["latency_ms"]
        if not isinstance(lat, Mapping) or not lat:
            raise r.fail(f"{key}.latency_ms", 'a non-empty mapping of pair key ("w8a8") -> {mean, std, count}', lat)
        allowed = caps.allowed_pairs(op)
        stats: dict[str, LatencyStat] = {}
        for k, v in lat.items():
            stat_key = lut_stat_key(r, k, f"{key}.latency_ms", op, allowed, caps)
            s = r.mapping(v, f"{key}.latency_ms.{k}", ("mean", "std", "count"), required=("mean",))
            stats[stat_key] = LatencyStat(
                mean=r.number(s["mean"], f"{key}.latency_ms.{k}.mean"),
                std=r.number(s.get("std", 0.0), f"{key}.latency_ms.{k}.std", strict=False),
                count=r.integer(s.get("count", 1), f"{key}.latency_ms.{k}.count"),
            )
        sig = signature_key(op, shape)
        if sig in seen:
            raise r.fail(f"{key}.shape", f"a signature not already given by cost.lut[{seen[sig]}]", dict(e["shape"]))
        seen[sig] = i
        entries.append(LutEntry(op=op, shape=shape, latency_ms=stats))
    return tuple(entries)


def _shape(r: Reader, data: Any, key: str, op: str) -> dict[str, Any]:
    keys = shape_keys(op)
    s = r.mapping(data, key, keys, required=keys)
    if op == "linear":
        return {k: r.integer(s[k], f"{key}.{k}") for k in keys}
    nd = SPATIAL_DIMS[op]
    out = {
        "batch": r.integer(s["batch"], f"{key}.batch"),
        "in_hw": r.int_tuple(s["in_hw"], f"{key}.in_hw", nd, allow_scalar=nd == 1),
        "cin": r.integer(s["cin"], f"{key}.cin"),
        "cout": r.integer(s["cout"], f"{key}.cout"),
        "kernel": r.int_tuple(s["kernel"], f"{key}.kernel", nd, allow_scalar=True),
        "stride": r.int_tuple(s["stride"], f"{key}.stride", nd, allow_scalar=True),
        "groups": r.integer(s["groups"], f"{key}.groups"),
    }
    g = out["groups"]
    if out["cin"] % g or out["cout"] % g:
        raise r.fail(f"{key}.groups", f"a divisor of cin={out['cin']} and cout={out['cout']}", g)
    if op.startswith("depthwise") and g != out["cin"]:
        raise r.fail(f"{key}.groups", f"equal to cin={out['cin']} for {op}", g)
    return out


# -- the other way: HardwareProfile -> plain data -------------------------------------------
def _plain(x: Any) -> Any:
    """Tuples -> lists, mappings -> dicts, recursively (YAML's safe dumper knows only those)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def profile_to_dict(profile: HardwareProfile) -> dict[str, Any]:
    """Plain data that :func:`parse_profile` turns back into an equal profile (``path`` aside)."""
    caps = profile.capabilities
    cap: dict[str, Any] = {"weight_bits": list(caps.weight_bits), "activation_bits": list(caps.activation_bits)}
    if caps.pairs is not None:
        cap["pairs"] = _plain(caps.pairs)
    cap.update(weight_mode=caps.weight_mode, weight_granularity=list(caps.weight_granularity),
               activation_mode=caps.activation_mode, scale=caps.scale, integer_only=caps.integer_only)
    if caps.group_size != 128:
        cap["group_size"] = caps.group_size
    if caps.formats is not None:
        cap["formats"] = formats_to_dict(caps.formats)
    if caps.methods != ("rtn",):
        cap["methods"] = list(caps.methods)
    if caps.per_op:
        cap["per_op"] = {op: {k: _plain(v) for k, v in (("weight_bits", o.weight_bits),
                                                         ("activation_bits", o.activation_bits),
                                                         ("pairs", o.pairs)) if v is not None}
                         for op, o in caps.per_op.items()}
    out: dict[str, Any] = {"version": VERSION, "name": profile.name, "description": profile.description,
                           "source": _plain(profile.source), "capabilities": cap}
    rules = {k: {"w_bits": v[0], "a_bits": v[1]} for k, v in
             (("first_layer", profile.rules.first_layer), ("last_layer", profile.rules.last_layer)) if v}
    if rules:
        out["rules"] = rules
    cost: dict[str, Any] = {}
    rl = profile.cost.roofline
    if rl is not None:
        cost["roofline"] = {"ops_per_s": dict(rl.ops_per_s), "bytes_per_s": rl.bytes_per_s, "overhead_ms": rl.overhead_ms}
        if rl.float_ops_per_s is not None:
            cost["roofline"]["float_ops_per_s"] = rl.float_ops_per_s
    if profile.cost.lut:
        cost["lut"] = [{"op": e.op, "shape": _plain(e.shape),
                        "latency_ms": {k: {"mean": s.mean, "std": s.std, "count": s.count}
                                       for k, s in e.latency_ms.items()}} for e in profile.cost.lut]
    mem = profile.cost.memory
    if mem is not None:
        cost["memory"] = {k: v for k, v in (("weight_bytes", mem.weight_bytes),
                                            ("activation_bytes", mem.activation_bytes)) if v is not None}
    en = profile.cost.energy
    if en is not None:
        cost["energy"] = {"active_mw": en.active_mw, "pj_per_byte": en.pj_per_byte}
        if en.pj_per_op:
            cost["energy"]["pj_per_op"] = dict(en.pj_per_op)
    out["cost"] = cost
    return out
