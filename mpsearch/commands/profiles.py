"""``mpsearch profiles``: list the hardware profiles, or show one.

    mpsearch profiles                   # table: name, source kind, bits, description
    mpsearch profiles show edge-tpu     # readable summary of one profile
    mpsearch profiles show edge-tpu --yaml   # the profile as YAML (canonical form)
"""

from __future__ import annotations

import argparse
import sys

import yaml

from mpsearch.errors import ConfigError, MpsearchError

HELP = "List the hardware profiles (shipped and in ./hw_profiles), or show one."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="list", help="'list' (default) or 'show NAME'")
    parser.add_argument("name", nargs="?", help="profile name or path to a profile file (for 'show')")
    parser.add_argument("--yaml", action="store_true", help="with 'show': print the profile as YAML")


def _console():
    from rich.console import Console

    # Follow sys.stdout as it is now (pytest's capsys swaps it); wide enough for one-line rows.
    return Console(file=sys.stdout, width=160, soft_wrap=False, highlight=False)


def _bits(profile) -> str:
    pairs = sorted({p for op in (None, *profile.capabilities.per_op) for p in profile.capabilities.allowed_pairs(op)},
                   reverse=True)
    if len(pairs) > 9:  # every combination of two bit sets: say so instead of listing dozens
        ws, as_ = sorted({w for w, _ in pairs}), sorted({a for _, a in pairs})
        if len(pairs) == len(ws) * len(as_):
            return f"w{{{_span(ws)}}} x a{{{_span(as_)}}} ({len(pairs)} pairs)"
    return " ".join(f"w{w}a{a}" for w, a in pairs)


def _span(bits: list[int]) -> str:
    """"2-8" for a run of consecutive bit-widths, else "2,4,8"."""
    if bits == list(range(bits[0], bits[-1] + 1)) and len(bits) > 2:
        return f"{bits[0]}-{bits[-1]}"
    return ",".join(map(str, bits))


def _list() -> int:
    from rich.table import Table

    from mpsearch.hardware import available_profiles, load_profile

    table = Table(title="hardware profiles")
    for col in ("name", "source", "pairs", "description"):
        table.add_column(col, no_wrap=col != "description", overflow="fold")
    for name, path in available_profiles().items():
        try:
            p = load_profile(path)
            table.add_row(name, p.source["kind"], _bits(p), p.description)
        except MpsearchError as exc:
            table.add_row(name, "INVALID", "", str(exc))
    _console().print(table)
    return 0


#: Below this spread of latency over the uniform plans of a reference network, a latency budget
#: cannot choose between bit-widths: every plan costs (nearly) the same time.
FLAT_LATENCY_SPAN = 0.02
#: Quantizable layers of the reference CNN in :func:`latency_span`.
N_REFERENCE_LAYERS = 3


def latency_span(profile) -> dict[str, float]:
    """Latency (ms) of the uniform plan of every (w, a) pair the profile runs (activations up to 8
    bits), on a reference CNN from its cost model: conv 3x3 16->32 and 32->32 on 16x16, global
    average pool, linear 32->10, batch 1 (compute-heavy like most CNN layers; the demo's
    resnet_tiny behaves the same)."""
    import torch
    from torch import nn

    from mpsearch.hardware import resource_table
    from mpsearch.model import discover

    torch.manual_seed(0)
    ref = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    layers = discover(ref, (torch.zeros(1, 16, 16, 16),))
    table = resource_table(layers, profile, batch=1)
    lat = table.resources["latency_ms"]
    totals: dict[str, float] = {}
    keys = {c.key for cs in table.candidates for c in cs if c.a_bits <= 8}
    for key in sorted(keys):
        total = 0.0
        for name, cands in zip(table.layers, table.candidates):
            own = {c.key for c in cands}
            # a layer that cannot run the pair (per-op rules, tile sizes) keeps its widest candidate
            k = key if key in own else max(cands, key=lambda c: (c.w_bits * min(c.a_bits, 8), c.key)).key
            total += float(lat[table.row_of(name, k)])
        totals[key] = total
    return totals


def _latency_lines(profile) -> list[str]:
    try:
        totals = latency_span(profile)
    except MpsearchError as exc:
        return [f"  latency:      not estimated on the reference CNN ({exc})"]
    if len(totals) < 2:
        return []
    lo, hi = min(totals.values()), max(totals.values())
    # the roofline's fixed per-layer overhead (kernel launch, DMA set-up) is paid at any bits, so the
    # span is taken over the rest: a GPU's tiny reference layers are launch-bound, not bit-blind
    rl = profile.cost.roofline
    fixed = N_REFERENCE_LAYERS * rl.overhead_ms if rl is not None and not profile.cost.lut else 0.0
    span = (hi - lo) / (hi - fixed) if hi - fixed > 0 else 0.0
    lines = [f"  latency:      uniform plans on a reference CNN: "
             + ", ".join(f"{k} {v:.4g} ms" for k, v in sorted(totals.items(), key=lambda kv: kv[1]))
             + f" (span {span:.1%}" + (f" of the time after the fixed {fixed:.3g} ms of per-layer overhead)" if fixed else ")")]
    if span < FLAT_LATENCY_SPAN:
        lines.append(f"  WARNING:      latency budgets cannot change the plan on this profile: its bit pairs differ in "
                     f"latency by {span:.2%} (< {FLAT_LATENCY_SPAN:.0%}) on the reference CNN; see the source notes")
    return lines


def _show(name: str, as_yaml: bool) -> int:
    from mpsearch.hardware import load_profile, profile_to_dict

    p = load_profile(name)
    if as_yaml:
        sys.stdout.write(yaml.safe_dump(profile_to_dict(p), sort_keys=False))
        return 0
    c, rl = p.capabilities, p.cost.roofline
    lines = [
        f"{p.name}: {p.description}",
        f"  file:         {p.path}",
        f"  source:       {p.source['kind']} - {p.source['notes']}",
        *[f"  reference:    {r}" for r in p.source.get("references", ())],
        f"  pairs:        {_bits(p)}",
        f"  weights:      {c.weight_mode}, {', '.join(c.weight_granularity)}; activations: {c.activation_mode}",
        f"  scale:        {c.scale}; integer_only: {str(c.integer_only).lower()}",
        *[f"  per_op:       {op}: {' '.join(f'w{w}a{a}' for w, a in c.allowed_pairs(op))}" for op in c.per_op],
        f"  rules:        first_layer={p.rules.first_layer or '-'} last_layer={p.rules.last_layer or '-'}",
    ]
    if rl is not None:
        rates = ", ".join(f"{k}={v:.4g}" for k, v in rl.ops_per_s.items())
        lines.append(f"  roofline:     ops_per_s {rates}; bytes_per_s={rl.bytes_per_s:.4g}; overhead_ms={rl.overhead_ms:g}")
    lines.append(f"  lut:          {len(p.cost.lut)} measured signatures")
    lines += _latency_lines(p)
    if p.cost.memory is not None:
        lines.append(f"  memory:       weight_bytes={p.cost.memory.weight_bytes} "
                     f"activation_bytes={p.cost.memory.activation_bytes}")
    if p.cost.energy is not None:
        e = p.cost.energy
        lines.append(f"  energy:       active_mw={e.active_mw:g} pj_per_op={dict(e.pj_per_op)} pj_per_byte={e.pj_per_byte:g}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    """List the profiles, or show the one named."""
    if args.action not in ("list", "show"):
        raise ConfigError(f"mpsearch profiles: the action must be 'list' or 'show NAME', but got {args.action!r} "
                          f"(did you mean 'mpsearch profiles show {args.action}'?)")
    if args.action == "list":
        if args.name:
            raise ConfigError(f"mpsearch profiles: a name is taken only by 'show', but got {args.name!r} "
                              f"(did you mean 'mpsearch profiles show {args.name}'?)")
        return _list()
    if not args.name:
        raise ConfigError("mpsearch profiles show: NAME must be given, but got nothing")
    return _show(args.name, args.yaml)
