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
    from mpsearch.hardware import load_profile, write_profile
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

    lms = [m for m in args.model if m in DEMO_LM_MODELS]
    for m in lms:  # a demo LM: its shapes only (fresh weights), one sequence of its full context
        import torch

        from mpsearch.demo import get_lm_model

        x = torch.zeros(1, DEMO_LM_MODELS[m].context, dtype=torch.long)
        layers += [layer for layer in discover(get_lm_model(m).eval(), x) if layer.kind == "linear"]
        labels.append(f"{m} (its linear layers, {DEMO_LM_MODELS[m].context} tokens per example)")
    args.model = [m for m in args.model if m not in DEMO_LM_MODELS]
    for label, model, x, _calib in (sources(args) if sources is not None and (args.model or args.recipe) else []):
        layers += [layer for layer in discover(model, x[:1]) if layer.kind == "linear"]
        labels.append(f"{label} (its linear layers, {tuple(x.shape[1:])} per example)")
    if not layers:
        raise ConfigError("mpsearch profile: --model, --recipe or --linear must give linear layers with --formats, "
                          "but got none")
    print(f"measuring {', '.join(keys)} on {len(layers)} linear layers at batch {args.batch or [1]} ...", flush=True)
    profile = profile_formats(layers, keys, base, batch=args.batch or [1], warmup=args.warmup, repeats=args.repeats,
                              threads=args.threads, name=name, label=", ".join(labels))
    if args.description:
        from dataclasses import replace

        profile = replace(profile, description=args.description)
    path = write_profile(profile, out)
    print_table(profile)
    print(f"wrote {path}")
    return 0
