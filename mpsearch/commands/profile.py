"""``mpsearch profile``: measure a latency LUT on this machine with the integer executor.

    mpsearch profile --device cpu --model resnet_tiny -o hw_profiles/my-device.yaml
    mpsearch profile --device cpu --model small_cnn --model resnet_tiny --batch 1 --batch 256 \\
        --pairs w8a8,w4a8,w4a4 --repeats 50 --warmup 10 -o hw_profiles/my-cpu.yaml
    mpsearch profile --device cpu --recipe recipes/demo.yaml -o hw_profiles/my-cpu.yaml

``--model`` is a demo model name or ``package.module:function``; the function returns a model,
or ``(model, example_inputs)`` (a model alone needs ``--input-shape``). Each model is measured at
each batch and pair; the profile gathers them (see :func:`mpsearch.profiler.profile_device`).
Prints the LUT with each pair's ratio to w8a8, so whether fewer bits are faster is plain to see.

``--formats w4a16g128,w8a16,w16a16`` measures weight-only formats instead, on the linear layers of
``--model`` (at ``--batch`` examples: rows = examples x tokens) and of ``--linear 1024x1024``, with
the executor's weight-only kernels, and merges them into ``--base`` (or the ``--append`` file):

    mpsearch profile --formats w4a16g128,w8a16,w16a16 --model gpt_tiny --base x86-2core-int -o llm.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mpsearch.errors import ConfigError, rule_error

HELP = "Measure per-layer latencies with the integer executor and write a measured hardware profile."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--model", action="append", default=[],
                        help="demo model name or package.module:function (repeat for several models)")
    parser.add_argument("--recipe", help="a recipe YAML: profile its model (data from the recipe)")
    parser.add_argument("--input-shape", help="per-example input shape for an imported model, e.g. 3,32,32")
    parser.add_argument("-o", "--output", required=True, help="profile file to write (.yaml or .json)")
    parser.add_argument("--name", help="profile name (default: the output file's stem)")
    parser.add_argument("--pairs", help="pairs to measure, e.g. w8a8,w4a8 (default w8a8,w8a4,w4a8,w4a4,w2a8,w2a4)")
    parser.add_argument("--batch", type=int, action="append", default=[],
                        help="examples per run (repeat for several; default 1)")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per measurement (default 50)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: stable timings)")
    parser.add_argument("--description", help="one line for `mpsearch profiles`")
    parser.add_argument("--formats", help="weight-only formats to measure on the linear layers, e.g. "
                        "w4a16g128,w8a16,w16a16 (merged into --base / the --append file; integer pairs not measured)")
    parser.add_argument("--linear", action="append", default=[],
                        help="with --formats: a linear layer IN_FEATURESxOUT_FEATURES to measure (repeat)")
    parser.add_argument("--base", help="with --formats: the profile (name or path) whose LUT the formats join")
    parser.add_argument("--engine", default="executor", choices=("executor", "onnxruntime"),
                        help="what runs the layers: mpsearch's integer executor (default) or ONNX Runtime (CPU; "
                             "each pair exported as ONNX QDQ, timed by ONNX Runtime's node profiler)")
    parser.add_argument("--append", action="store_true",
                        help="keep the LUT of an existing output file and pool the new measurements into it")


def _demo(name: str) -> tuple[Any, Any, list[Any]]:
    from mpsearch.demo import DEMO_MODELS, batches, load_demo

    if name not in DEMO_MODELS:
        from mpsearch.errors import unknown_name

        raise unknown_name("demo model", name, DEMO_MODELS, "mpsearch profile: --model")
    model, splits = load_demo(name)
    return model, splits.test.tensors[0][:256], [b[0] for b in batches(splits.train, 256)][:2]


def _imported(path: str, input_shape: str | None) -> tuple[Any, Any, list[Any]]:
    import torch
    from torch import nn

    from mpsearch.recipe import import_object

    made = import_object(path, "mpsearch profile", "--model")()
    model, x = (made if isinstance(made, tuple) and len(made) == 2 else (made, None))
    if not isinstance(model, nn.Module):
        raise ConfigError(f"mpsearch profile: --model must return a torch.nn.Module or (model, example_inputs), "
                          f"but {path} returned {type(made).__name__}")
    if x is None:
        try:
            shape = tuple(int(d) for d in (input_shape or "").split(","))
        except ValueError:
            shape = ()
        if not shape or min(shape) < 1:
            raise rule_error("mpsearch profile", "--input-shape", "a per-example shape like 3,32,32 (needed when "
                             f"{path} returns a model alone)", input_shape)
        x = torch.randn((8, *shape), generator=torch.Generator().manual_seed(0))
    model.eval()
    return model, x, [x]


def _sources(args: argparse.Namespace) -> list[tuple[str, Any, Any, list[Any]]]:
    from mpsearch.recipe import is_import_path

    out = []
    for m in args.model:
        out.append((m, *(_imported(m, args.input_shape) if is_import_path(m) else _demo(m))))
    if args.recipe:
        from mpsearch.pipeline.inputs import load_inputs
        from mpsearch.recipe import load_recipe

        recipe = load_recipe(args.recipe)
        inputs = load_inputs(recipe)
        calib = [b[0] if isinstance(b, (tuple, list)) else b for b in inputs.train[:2]]
        out.append((recipe.model, inputs.model, calib[0], calib))
    if not out:
        raise ConfigError("mpsearch profile: --model or --recipe must be given, but got neither")
    return out


def _print_table(profile: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from mpsearch.profiler import lut_table

    rows = lut_table(profile)
    keys = sorted({k for r in rows for k in r if k.startswith("w")}, reverse=True)
    table = Table(title=f"{profile.name}: measured latency (ms, mean) per layer signature and pair")
    for col in ("op", "shape", *keys, "fastest / w8a8"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(r["op"], r["shape"], *(f"{r[k]:.4f}" if k in r else "-" for k in keys),
                      f"{r.get('min_ratio_to_w8a8', 1.0):.2f}")
    Console(file=sys.stdout, width=200, highlight=False).print(table)


def run(args: argparse.Namespace) -> int:
    from mpsearch.hardware import load_profile, write_profile
    from mpsearch.profiler import parse_pairs, profile_device, resolve_device

    resolve_device(args.device)  # fail before loading models
    pairs = parse_pairs(args.pairs, "--pairs") if args.pairs else None
    out = Path(args.output)
    if out.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise rule_error("mpsearch profile", "-o", "a path ending in .yaml, .yml or .json", args.output)
    from mpsearch.core.io import check_output_path

    check_output_path(out, "", "-o")  # before any measuring
    name = args.name or out.stem
    base = load_profile(out) if args.append and out.is_file() else None
    if args.formats:
        from mpsearch.commands._profile_formats import run_formats

        return run_formats(args, out, name, base, _sources if args.model or args.recipe else None, _print_table)
    profile = base
    for label, model, x, calib in _sources(args):
        print(f"measuring {label} at batch {args.batch or [1]} ...", flush=True)
        if args.engine == "onnxruntime":
            from mpsearch.profiler.onnxruntime_engine import profile_onnxruntime

            profile = profile_onnxruntime(model, x, pairs=pairs, batch=args.batch or [1], warmup=args.warmup,
                                          repeats=args.repeats, name=name, base_profile=profile, threads=args.threads,
                                          calib_batches=calib, description=args.description, label=label)
            continue
        profile = profile_device(model, x, device=args.device, pairs=pairs, batch=args.batch or [1],
                                 warmup=args.warmup, repeats=args.repeats, name=name, base_profile=profile,
                                 threads=args.threads, calib_batches=calib, description=args.description,
                                 label=label)
    assert profile is not None
    path = write_profile(profile, out)
    _print_table(profile)
    rl = profile.cost.roofline
    print(f"roofline fit: ops_per_s {dict((k, f'{v:.3g}') for k, v in rl.ops_per_s.items())}, "
          f"bytes_per_s {rl.bytes_per_s:.3g}, overhead_ms {rl.overhead_ms:.4f}")
    print(f"wrote {path}")
    return 0
