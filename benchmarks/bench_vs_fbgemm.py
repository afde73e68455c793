"""The integer executor against torch.ao static int8 on fbgemm, W8A8, in one run (#17 target 1).

    python benchmarks/bench_vs_fbgemm.py [--repeats 30] [--batches 1,256] [--threads 1,2]
                                         [--models small_cnn,resnet_tiny,mobilenet_tiny] [--no-lm]
    python benchmarks/bench_vs_fbgemm.py --profile resnet_tiny --batches 256 --threads 1

For every demo CNN, batch (1, 256) and thread count (1, 2): the W8A8 fake-quant model, its integer
program (``IntegerModel.logits_int``: input quantization + the integer program, "auto" backend:
"int_mm_fused" on this CPU)
and torch.ao's fbgemm static int8 model of the same quantization
(``execution.reference.torch_int8_reference``: float input -> quint8 logits) are timed with their
runs interleaved (one run of each per round, the order reversed every other round; median), so a
burst of load from another process falls on both. The ratio is fbgemm's time / the executor's time
(> 1: the executor is faster). Before timing, the executor's logits are checked bit for bit
against the same program run with the generic int32 torch kernels (``gemm="int32"``, each kernel
tested against an int64 reference in tests/execution).

The demo LM's linear layers (gpt_tiny's trained weights: q_proj 128->128, fc_in 128->512, fc_out
512->128, head 128->256) are timed the same way as one-layer W8A8 models (rows = batch: 1 or 256
token vectors; torch.ao ``quantized.Linear`` on fbgemm vs a ``linear`` + ``requant`` program).

``--profile MODEL``: the time of each kernel call of the integer program and of each torch.ao
module (best of ``--repeats``), to see where the time goes.
Writes benchmarks/results/bench_vs_fbgemm.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from mpsearch.core import BitPlan
from mpsearch.demo import batches, load_demo, load_demo_lm_run
from mpsearch.execution import to_integer
from mpsearch.execution.reference import torch_int8_reference
from mpsearch.quant import quantizable_layer_names, quantize

from _timing import print_fastest_steps, time_interleaved  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

MODELS = ("small_cnn", "resnet_tiny", "mobilenet_tiny")
LM_LAYERS = ("blocks.0.attn.q_proj", "blocks.0.mlp.fc_in", "blocks.0.mlp.fc_out", "head")


def _check_exact(imodel: Any, x: torch.Tensor) -> None:
    """The executor's logits ("auto" backend) against the generic int32 torch kernels (each tested
    against an int64 reference in tests/execution), bit for bit."""
    codes = imodel.quantize_input(x)
    got = imodel.run(*codes)
    want = imodel.to(gemm="int32").run(*codes)
    imodel.to(gemm="auto")
    if not torch.equal(got, want):
        raise AssertionError(f"executor differs from the int32 kernels on {int((got != want).sum())} values")


def cnn_pair(name: str, batch: int) -> tuple[Any, Callable[[], Any], Callable[[], Any], torch.Tensor]:
    model, splits = load_demo(name)
    q = quantize(model, BitPlan.uniform(quantizable_layer_names(model), 8, 8), batches(splits.train, 256))
    x_test = splits.test.tensors[0]
    x = x_test.repeat(-(-batch // len(x_test)), 1, 1, 1)[:batch].contiguous()
    imodel = to_integer(q, splits.example_inputs(2))
    ref = torch_int8_reference(q, imodel.output.scale, 0, list(batches(splits.train, 256))[:2])
    return imodel, (lambda: imodel.logits_int(x)), (lambda: ref(x)), x


def lm_pair(layer: str, rows: int) -> tuple[Any, Callable[[], Any], Callable[[], Any], torch.Tensor]:
    run = load_demo_lm_run("gpt_tiny")
    src = run.model.get_submodule(layer)
    lin = nn.Linear(src.in_features, src.out_features, bias=src.bias is not None)
    lin.load_state_dict(src.state_dict())
    model = nn.Sequential(lin).eval()
    gen = torch.Generator().manual_seed(0)
    calib = [torch.randn(256, src.in_features, generator=gen) for _ in range(2)]
    q = quantize(model, BitPlan.uniform(quantizable_layer_names(model), 8, 8), calib)
    imodel = to_integer(q, calib[0][:2])
    ref = torch_int8_reference(q, imodel.output.scale, 0, calib)
    x = torch.randn(rows, src.in_features, generator=gen)
    return imodel, (lambda: imodel.logits_int(x)), (lambda: ref(x)), x


def bench(kind: str, name: str, batch: int, threads: int, repeats: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    imodel, ex, fb, x = (cnn_pair if kind == "cnn" else lm_pair)(name, batch)
    _check_exact(imodel, x)
    with torch.no_grad():
        sec = time_interleaved({"executor": ex, "fbgemm": fb}, repeats)
    return {"kind": kind, "model": name, "batch": batch, "threads": threads, "executor_ms": sec["executor"] * 1e3,
            "fbgemm_ms": sec["fbgemm"] * 1e3, "speed_vs_fbgemm": sec["fbgemm"] / sec["executor"],
            "load_1min": os.getloadavg()[0]}


def profile(name: str, batch: int, threads: int, repeats: int) -> None:
    """Best time of each integer kernel call and of each torch.ao step of ``name``."""
    torch.set_num_threads(threads)
    imodel, _, _, x = cnn_pair(name, batch) if name in MODELS else lm_pair(name, batch)
    print_fastest_steps(imodel, x, repeats)
    with torch.autograd.profiler.profile() as prof, torch.no_grad():
        _, _, fb, _ = cnn_pair(name, batch) if name in MODELS else lm_pair(name, batch)
        for _ in range(repeats):
            fb()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batches", default="1,256")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--no-lm", action="store_true")
    parser.add_argument("--profile", default="")
    args = parser.parse_args()
    torch.backends.quantized.engine = "fbgemm"
    batch_list = [int(b) for b in args.batches.split(",")]
    thread_list = [int(t) for t in args.threads.split(",")]
    if args.profile:
        profile(args.profile, batch_list[0], thread_list[0], args.repeats)
        return
    cells = [("cnn", m) for m in args.models.split(",") if m] + ([] if args.no_lm else [("lm", n) for n in LM_LAYERS])
    rows = []
    load_start = os.getloadavg()
    for kind, name in cells:
        for batch in batch_list:
            for threads in thread_list:
                row = bench(kind, name, batch, threads, args.repeats)
                rows.append(row)
                print(f"{name:<22} batch {batch:>4} threads {threads}  executor {row['executor_ms']:8.3f} ms  "
                      f"fbgemm {row['fbgemm_ms']:8.3f} ms  speed vs fbgemm {row['speed_vs_fbgemm']:.2f}x  "
                      f"load {row['load_1min']:.1f}", flush=True)
    out = {"benchmark": "bench_vs_fbgemm", "machine": f"{platform.machine()} {platform.processor()} "
           f"{os.cpu_count()} cores", "torch": torch.__version__, "engine": "fbgemm",
           "unit": "ms per forward (median of interleaved repeats); speed = fbgemm ms / executor ms",
           "load_average_start": list(load_start), "load_average_end": list(os.getloadavg()), "rows": rows}
    path = Path(__file__).parent / "results" / "bench_vs_fbgemm.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
