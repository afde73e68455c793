"""A plan's predicted latency against its measured latency: gpt_tiny, one sequence of 128 tokens, CPU.

    mpsearch run recipes/demo-gpt-latency.yaml --output-dir runs      # the mixed plan + its cost table
    python benchmarks/bench_lm_latency.py [--run-dir runs/demo-gpt-latency] [--repeats 60]

Plans (each costed by the run's cost table, on the measured profile x86-2core-int):
  * uniform w16a16, uniform w4a16g128 (every layer, embeddings included);
  * the mixed plan of demo-gpt-latency (size and latency budgets of uniform W4 g128);
  * for contrast, the mixed plan at the same size budget alone (latency not constrained).

Predicted: the cost table's ``latency_ms`` summed over the plan's layers. The 13 linear layers are
costed from measured LUT entries (isolated kernels, :mod:`mpsearch.profiler.formats`); the two
embeddings have no LUT entry (a lookup) and get the roofline's figure. The prediction covers only
the quantizable layers: not the float islands (LayerNorm, attention, GELU, residual adds).

Measured: each plan quantized (``mps.quantize``), built into a program (``to_integer``, float
islands declared), and run on a (1, 128) token batch with one intra-op thread, every kernel call
timed as the program runs it (the loop of ``IntegerModel.run``); the plans are run interleaved in
rounds. Per run: the time of the weight-only linear steps (``wo_linear``; w16a16 layers run as
float32 ``F.linear``), of the layers' other steps and of the whole program. Reported: the median
over runs, and the mean of the fastest quarter (the profiler's estimator, ``stat_of``), and the
ratios measured / predicted. Writes benchmarks/results/lm_latency.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import mpsearch as mps
from mpsearch.allocation import uniform_plan
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.demo import load_demo_lm_run, text_batches
from mpsearch.execution import IntegerConfig, to_integer
from mpsearch.profiler._timing import stat_of


def _layer_steps(imodel: Any, layer_names: list[str]) -> tuple[list[Any], set[int]]:
    """The program's kernel calls, and the indices of those that run a linear layer of the plan."""
    steps = imodel.steps()
    op_names = [op.name for op in imodel.ops]
    layer_ops = {name for layer, name in imodel.meta.get("layers", {}).items() if layer in layer_names}
    # a layer kept in float (w16a16) is a float island whose source names the module:
    # "node (module blocks.0.up (QuantLinear))"
    float_srcs = {f"(module {n} (" for n in layer_names}
    idx = set()
    for i, s in enumerate(steps):
        op = imodel.ops[s.ops[0]]
        if op.KIND == "wo_linear" and op_names[s.ops[0]] in layer_ops:
            idx.add(i)
        elif op.KIND == "float_op" and any(f in str(op.source) for f in float_srcs):
            idx.add(i)
    return steps, idx


def _run_once(imodel: Any, steps: list[Any], idx: set[int], x: torch.Tensor) -> tuple[float, float]:
    """(ms in the layer steps, ms end to end) of one run, as ``IntegerModel.run`` runs it."""
    from mpsearch.execution._steps import last_reads

    clock = time.perf_counter
    last = last_reads(steps)
    start = clock()
    codes = imodel.quantize_input(x)
    env = {inp.name: c for inp, c in zip(imodel.inputs, codes)}
    in_layers = 0.0
    for i, step in enumerate(steps):
        t0 = clock()
        env[step.output] = step.kernel(*(env[n] for n in step.inputs))
        for n in step.inputs:
            if last.get(n) == i and n != imodel.output.name:
                env.pop(n, None)
        if i in idx:
            in_layers += clock() - t0
    imodel.dequantize(env[imodel.output.name])
    return in_layers * 1e3, (clock() - start) * 1e3


class _FloatModel:
    """The float model run eagerly, its linear layers timed by hooks: how a uniform w16a16 plan is measured
    (float32 ``F.linear``, what the profiler times for w16a16). In a mixed plan the executor runs a
    w16a16 layer as a float island of the same ``F.linear``, timed where the program makes it."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        self.model, self.in_layers, self._t0 = model, 0.0, 0.0
        for n in names:
            m = model.get_submodule(n)
            m.register_forward_pre_hook(lambda *_: setattr(self, "_t0", time.perf_counter()))
            m.register_forward_hook(lambda *_: setattr(self, "in_layers",
                                                       self.in_layers + time.perf_counter() - self._t0))

    def run_once(self, x: torch.Tensor) -> tuple[float, float]:
        self.in_layers = 0.0
        t0 = time.perf_counter()
        self.model(x)
        return self.in_layers * 1e3, (time.perf_counter() - t0) * 1e3


def _one(prog: Any, x: torch.Tensor) -> tuple[float, float]:
    return prog.run_once(x) if isinstance(prog, _FloatModel) else _run_once(*prog, x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/demo-gpt-latency")
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    if not (run_dir / "cost_table.json").is_file():
        raise SystemExit(f"bench_lm_latency: --run-dir must hold the results of `mpsearch run "
                         f"recipes/demo-gpt-latency.yaml --output-dir runs`, but {run_dir / 'cost_table.json'} "
                         "does not exist (run the recipe first)")
    records = json.loads((run_dir / "cost_table.json").read_text())
    table = CostTable.from_records(records["records"], ties=records.get("ties"))
    sources = records["latency_sources"]  # per row, as the run recorded them: "lut" or "roofline"
    profile = mps.load_profile("x86-2core-int")
    mixed = BitPlan.load(run_dir / "plan.yaml")
    w4 = uniform_plan(table, 4, 16, key="w4a16g128")[0]
    plans = {"uniform w16a16": uniform_plan(table, 16, 16, key="w16a16")[0], "uniform w4a16g128": w4,
             "mixed (size + latency budgets)": mixed,
             "mixed (size budget alone)": mps.allocate(table, budgets={"size_bytes": w4.totals["size_bytes"]})}
    lrun = load_demo_lm_run("gpt_tiny", seed=0)
    model, splits = lrun.model.eval(), lrun.splits
    ctx = model.config.context
    calib = list(text_batches(splits.train, ctx, 16, n_batches=2, seed=0))
    x = splits.example_inputs(1, ctx)[0]
    linear = [n for n in table.layers if not n.endswith("_emb")]
    progs, rows = {}, {}
    lat = table.resources["latency_ms"]
    for name, plan in plans.items():
        float_kept = [n for n, b in plan.layers.items() if b.key == "w16a16"]
        if len(float_kept) == len(plan.layers):  # all float: the float model itself, as the profiler times it
            progs[name] = _FloatModel(copy.deepcopy(model), linear)
        else:
            q = mps.quantize(model, plan, calib, profile=profile)
            imodel = to_integer(q, (x,), IntegerConfig(integer_only=False))
            steps, idx = _layer_steps(imodel, linear)
            assert len(idx) == len(linear), (name, len(idx))
            progs[name] = (imodel, steps, idx)
        pred = {n: float(lat[table.row_of(n, b.key)]) for n, b in plan.layers.items()}
        src = {n: sources[table.row_of(n, b.key)] for n, b in plan.layers.items()}
        rows[name] = {"bits": {n: b.key for n, b in plan.layers.items()},
                      "measured_as": "float model, eager" if float_kept else "integer program (to_integer)",
                      "size_bytes": float(sum(table.resources["size_bytes"][table.row_of(n, b.key)]
                                              for n, b in plan.layers.items())),
                      "predicted_linear_ms": sum(pred[n] for n in linear),
                      "predicted_all_layers_ms": sum(pred.values()),
                      "linear_latency_sources": sorted({src[n] for n in linear})}
    samples: dict[str, list[tuple[float, float]]] = {n: [] for n in progs}
    load_start = " ".join(f"{v:.2f}" for v in os.getloadavg())
    with torch.no_grad():
        for name in progs:
            for _ in range(5):
                _one(progs[name], x)
        per_round = max(1, args.repeats // args.rounds)
        for r in range(args.rounds):
            for name in (list(progs) if r % 2 == 0 else list(progs)[::-1]):
                for _ in range(per_round):
                    samples[name].append(_one(progs[name], x))
    load_end = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"gpt_tiny, 1 x {ctx} tokens, {args.threads} thread(s), {per_round * args.rounds} runs per plan "
          f"interleaved; load average {load_start} -> {load_end}")
    print(f"{'plan':32s} {'pred lin':>9s} {'meas lin':>9s} {'ratio':>6s} {'(q25)':>6s} {'pred all':>9s} "
          f"{'program':>8s} {'ratio':>6s}")
    for name, s in samples.items():
        lin, e2e = [a for a, _ in s], [b for _, b in s]
        row = rows[name]
        row.update(measured_linear_median_ms=statistics.median(lin), measured_linear_fast_quarter_ms=stat_of(lin).mean,
                   measured_program_median_ms=statistics.median(e2e),
                   measured_program_fast_quarter_ms=stat_of(e2e).mean, runs=len(s))
        row["ratio_linear_median"] = row["measured_linear_median_ms"] / row["predicted_linear_ms"]
        row["ratio_linear_fast_quarter"] = row["measured_linear_fast_quarter_ms"] / row["predicted_linear_ms"]
        row["ratio_program_median"] = row["measured_program_median_ms"] / row["predicted_all_layers_ms"]
        print(f"{name:32s} {row['predicted_linear_ms']:9.3f} {row['measured_linear_median_ms']:9.3f} "
              f"{row['ratio_linear_median']:6.2f} {row['ratio_linear_fast_quarter']:6.2f} "
              f"{row['predicted_all_layers_ms']:9.3f} {row['measured_program_median_ms']:8.3f} "
              f"{row['ratio_program_median']:6.2f}")
    out = Path(__file__).parent / "results" / "lm_latency.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                               "threads": args.threads, "tokens": ctx, "load_average": [load_start, load_end],
                               "plans": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
