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
