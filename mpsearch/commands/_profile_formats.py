"""``mpsearch profile --formats``: weight-only formats measured on linear layers, merged into a profile."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Callable

from mpsearch.errors import ConfigError, rule_error


def _linear_layers(specs: list[str]) -> list[Any]:
    from mpsearch.hardware.signature import layer_from_signature

    out = []
    for spec in specs:
        m = re.fullmatch(r"(\d+)x(\d+)", spec.strip())
        if not m or min(int(m.group(1)), int(m.group(2))) < 1:
            raise rule_error("mpsearch profile", "--linear", "IN_FEATURESxOUT_FEATURES such as 1024x1024", spec)
        out.append(layer_from_signature("linear", {"batch": 1, "in_features": int(m.group(1)),
                                                   "out_features": int(m.group(2))}, name=f"linear_{spec}"))
    return out


def run_formats(args: argparse.Namespace, out: Path, name: str, base: Any,
                sources: Callable[[argparse.Namespace], list[Any]] | None, print_table: Callable[[Any], None]) -> int:
    """Measure ``args.formats`` on the models' linear layers and ``--linear`` shapes; write the merged profile."""
    from mpsearch.hardware import load_profile
    from mpsearch.model import discover
    from mpsearch.profiler.formats import profile_formats

    if args.device != "cpu":
        raise rule_error("mpsearch profile", "--device", "cpu with --formats (torch's weight-only kernels are CPU "
                         "kernels here)", args.device)
    if base is None:
        if not args.base:
            raise ConfigError("mpsearch profile: --base (or --append to an existing -o file) must be given with "
                              "--formats (the profile whose formats and LUT the measurements join), but got neither")
        base = load_profile(args.base)
    keys = [k.strip() for k in args.formats.split(",") if k.strip()]
    layers, labels = _linear_layers(args.linear), list(args.linear)
    from mpsearch.demo import DEMO_LM_MODELS

    profile = base
    for m in [m for m in args.model if m in DEMO_LM_MODELS]:  # a demo LM: timed in context, its shapes only
        profile = _lm_in_context(m, keys, profile, args, name)
    args.model = [m for m in args.model if m not in DEMO_LM_MODELS]
    for label, model, x, _calib in (sources(args) if sources is not None and (args.model or args.recipe) else []):
        layers += [layer for layer in discover(model, x[:1]) if layer.kind == "linear"]
        labels.append(f"{label} (its linear layers, {tuple(x.shape[1:])} per example)")
    if not layers and profile is not base:
        return _write(profile, out, args, print_table)
    if not layers:
        raise ConfigError("mpsearch profile: --model, --recipe or --linear must give linear layers with --formats, "
                          "but got none")
    print(f"measuring {', '.join(keys)} on {len(layers)} linear layers at batch {args.batch or [1]} ...", flush=True)
    profile = profile_formats(layers, keys, profile, batch=args.batch or [1], warmup=args.warmup, repeats=args.repeats,
                              threads=args.threads, name=name, label=", ".join(labels))
    return _write(profile, out, args, print_table)


def _lm_in_context(m: str, keys: list[str], base: Any, args: argparse.Namespace, name: str) -> Any:
    """Formats on demo LM ``m`` in context: fresh weights (only shapes and kernels matter), --batch sequences
    of its full context of random bytes."""
    import torch

    from mpsearch.demo import DEMO_LM_MODELS, get_lm_model
    from mpsearch.profiler.formats import profile_formats_in_context

    cfg = DEMO_LM_MODELS[m]
    g = torch.Generator().manual_seed(0)
    model = get_lm_model(m).eval()
    profile = base
    for b in args.batch or [1]:
        x = torch.randint(0, cfg.vocab_size, (b, cfg.context), generator=g)
        calib = [(torch.randint(0, cfg.vocab_size, (8, cfg.context), generator=g),) for _ in range(2)]
        calib = [c[0] for c in calib]
        print(f"measuring {', '.join(keys)} on {m} in context, {b} x {cfg.context} tokens ...", flush=True)
        profile = profile_formats_in_context(model, x, keys, profile, calib, warmup=min(args.warmup, 5),
                                             repeats=args.repeats, threads=args.threads, name=name,
                                             label=f"{m} (fresh weights)")
    return profile


def _write(profile: Any, out: Path, args: argparse.Namespace, print_table: Callable[[Any], None]) -> int:
    from dataclasses import replace

    from mpsearch.hardware import write_profile

    if args.description:
        profile = replace(profile, description=args.description)
    path = write_profile(profile, out)
    print_table(profile)
    print(f"wrote {path}")
    return 0
