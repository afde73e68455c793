"""Measure a latency LUT through ONNX Runtime, so a profile describes the engine a user deploys with.

    profile = profile_onnxruntime(model, example_inputs, pairs=[(8, 8), (4, 8)], batch=[1], name="my-ort")

For each batch x (w, a) pair the model is quantized uniformly at that pair, exported with
:func:`~mpsearch.execution.export.export_onnx` (opset 21: int4 for 2..4 bits), and run in ONNX
Runtime (CPUExecutionProvider, its QDQ fusions on: the deployed speed) with ONNX Runtime's own
per-node profiler on. Every ONNX node carries the fx node it came from in its name (the part
before ``/``); a node belongs to its layer, and a non-layer node to the layer that produced its
first input (the input quantizer to the first layer), as in the executor's profiler. Per run,
each layer's node times are summed and scaled so the layers add up to the run's end-to-end time
(session overhead spread in proportion). The LUT has the profiler's format (:func:`build_profile`).
"""

from __future__ import annotations

import datetime
import os
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import fx, nn

from mpsearch.core.profile import HardwareProfile, LatencyStat
from mpsearch.errors import ConfigError
from mpsearch.hardware._check import pair_key
from mpsearch.hardware.signature import layer_signature, signature_key
from mpsearch.profiler._build import build_profile
from mpsearch.profiler._measure import _batch_of, _check_counts, parse_pairs
from mpsearch.profiler._timing import TRIM


def _owner_map(qmodel: fx.GraphModule, layer_names: set[str]) -> dict[str, str]:
    """ONNX node-name prefix (module path, or fx name) -> the layer its time belongs to."""
    owner: dict[fx.Node, str] = {}
    first_layer = next((str(n.target) for n in qmodel.graph.nodes
                        if n.op == "call_module" and str(n.target) in layer_names), "")
    for node in qmodel.graph.nodes:
        if node.op == "call_module" and str(node.target) in layer_names:
            owner[node] = str(node.target)
        else:
            src = next((a for a in node.all_input_nodes if a in owner), None)
            owner[node] = owner[src] if src is not None else first_layer
    return {(str(n.target) if n.op == "call_module" else n.name): o for n, o in owner.items()}


def _per_run_layer_ms(events: list[dict[str, Any]], owners: dict[str, str]) -> list[dict[str, float]]:
    """Per ``model_run`` event: layer -> ms (node kernel times attributed, scaled to the run's time)."""
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    nodes = sorted((e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")),
                   key=lambda e: e["ts"])
    out, i = [], 0
    for run in runs:
        end = run["ts"] + run["dur"]
        per: dict[str, float] = defaultdict(float)
        while i < len(nodes) and nodes[i]["ts"] < run["ts"]:
            i += 1
        while i < len(nodes) and nodes[i]["ts"] <= end:
            prefix = nodes[i]["name"][: -len("_kernel_time")].split("/")[0]
            layer = owners.get(prefix) or next((o for p, o in owners.items() if prefix.startswith(p)), None)
            if layer is not None:
                per[layer] += nodes[i]["dur"]
            i += 1
        total = sum(per.values())
        if total > 0:
            out.append({k: v / total * run["dur"] / 1e3 for k, v in per.items()})  # us -> ms, scaled to the run
    return out


def _stat(values: list[float]) -> LatencyStat:
    kept = sorted(values)[: max(1, round(len(values) * (1 - TRIM)))]
    return LatencyStat(mean=statistics.fmean(kept), std=statistics.pstdev(kept) if len(kept) > 1 else 0.0,
                       count=len(kept))


def profile_onnxruntime(model: nn.Module, example_inputs: Any, pairs: Sequence[Any] | str | None = None,
                        batch: int | Sequence[int] = 1, warmup: int = 10, repeats: int = 50, name: str | None = None,
                        base_profile: HardwareProfile | None = None, threads: int = 1,
                        calib_batches: Iterable[Any] | None = None, description: str | None = None,
                        label: str | None = None) -> HardwareProfile:
    """The measured profile of ``model`` in ONNX Runtime (arguments as :func:`~mpsearch.profiler.profile_device`).

    Raises:
        ConfigError: onnx / onnxruntime missing, or bad pairs, batch, counts or inputs.
        UnsupportedModelError: the model has an op the exporter cannot express (named).
    """
    from mpsearch.core.plan import BitPlan
    from mpsearch.execution.export import OnnxRunner, export_onnx
    from mpsearch.model import discover
    from mpsearch.profiler.device import DEFAULT_PAIRS, _load_avg
    from mpsearch.quant import quantizable_layer_names, quantize

    pair_list = list(parse_pairs(pairs if pairs is not None else DEFAULT_PAIRS, "pairs"))
    if (8, 8) not in pair_list:
        pair_list.insert(0, (8, 8))
    batches = [batch] if isinstance(batch, int) else list(batch)
    _check_counts(warmup, repeats, batches, threads)
    calib = list(calib_batches) if calib_batches is not None else None
    measured: dict[Any, dict[str, list[LatencyStat]]] = defaultdict(lambda: defaultdict(list))
    load_start = _load_avg()
    with tempfile.TemporaryDirectory() as tmp:
        for b in batches:
            x = _batch_of(example_inputs, b)
            layers = discover(model, x)
            names = {layer.name for layer in layers}
            for w, a in pair_list:
                qmodel = quantize(model, BitPlan.uniform(quantizable_layer_names(model), w, a),
                                  calib if calib is not None else [x])
                path = export_onnx(qmodel, x[:2], Path(tmp) / f"b{b}_w{w}a{a}.onnx")
                runner = OnnxRunner(path, threads=threads, profile_prefix=str(Path(tmp) / "ort"))
                feeds = runner.feeds(x)
                for _ in range(warmup + repeats):
                    runner.run_numpy(feeds)
                events = runner.end_profiling()
                runs = _per_run_layer_ms(events, _owner_map(qmodel, names))[warmup:]
                if not runs:
                    raise ConfigError("profile --engine onnxruntime: ONNX Runtime's profile held no model runs")
                for layer in layers:
                    op, shape = layer_signature(layer, b)
                    measured[signature_key(op, shape)][pair_key(w, a)].append(
                        _stat([r.get(layer.name, 0.0) for r in runs]))
    import onnxruntime

    machine = f"{os.uname().machine} CPU; onnxruntime {onnxruntime.__version__} CPUExecutionProvider; {threads} thread(s)"
    today = datetime.date.today().isoformat()
    what = label or type(model).__name__
    notes = (f"Measured through ONNX Runtime {onnxruntime.__version__} (CPUExecutionProvider, graph optimizations and "
             f"QDQ fusions on, {threads} intra-op thread(s)) by mpsearch's profiler, {today}: {what}, batch "
             f"{', '.join(map(str, batches))}, each pair exported with export_onnx (opset 21, int4 for 2..4 bits), "
             f"{warmup} warm-up + {repeats} timed runs; ONNX Runtime's per-node profiler times every node, a node's "
             "time goes to its layer (non-layer nodes to the layer that produced their first input), and each run's "
             f"layer times are scaled to its end-to-end time. Mean/std/count over the fastest {1 - TRIM:.0%} of runs "
             f"per layer. Load average {load_start} at the start, {_load_avg()} at the end.")
    return build_profile(measured, name or "onnxruntime-measured",
                         description or f"measured in ONNX Runtime on {machine.split(';')[0]}", notes, machine,
                         base_profile)
