"""Measure a latency LUT on this machine with the integer executor, fit a roofline, write a profile.

    profile = profile_device(model, example_inputs, device="cpu", batch=1, name="my-cpu")
    write_profile(profile, "hw_profiles/my-cpu.yaml")
    stat = measure_layer(layer, (4, 8), device="cpu", batch=1)     # one layer, isolated

What is timed is what :class:`mpsearch.execution.IntegerModel` runs (see
:mod:`mpsearch.profiler._timing`):

* given a **model**, for each (w, a) pair the model is quantized uniformly at that pair
  (min-max calibration on the example inputs), turned into an integer program, and every op is
  timed in context; each layer's latency is its conv / linear kernel + requant epilogue + the
  non-layer ops attributed to it (residual rescales and adds, pools, input quantization), so
  the layers' latencies add up to the model's end-to-end latency;
* given **layers** (no model), each layer is timed isolated: its kernel + requant epilogue on
  random codes, built from its signature.

Layers that share a signature (within a model, across models, or with ``base_profile``) share
one LUT entry: their measurements are pooled (count-weighted mean, pooled std, summed count).

Nothing assumes a speed-up for fewer bits: every pair in the LUT is measured with codes of that
width. The executor stores codes of 2..8 bits in int8, so on a CPU the pairs cost the same up to
noise, and the LUT says so. The written profile's capabilities are what the executor runs:
w and a in 2..8, symmetric per-channel weights, asymmetric activations, dyadic scales, integer
only. The roofline (for unmeasured shapes) is fitted to the LUT by :func:`fit_roofline` with one
rate, ``w8a8``, that every pair falls back to (no speed-up assumed for fewer bits).
"""

from __future__ import annotations

import datetime
import os
from collections import defaultdict
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from mpsearch.core.profile import HardwareProfile, LatencyStat
from mpsearch.core.types import Layer
from mpsearch.errors import rule_error
from mpsearch.hardware._check import pair_key
from mpsearch.hardware.signature import SignatureKey, layer_signature, signature_key
from mpsearch.profiler._build import build_profile, machine_description
from mpsearch.profiler._measure import (_check_counts, measure_layer, measure_model_grid, parse_pairs,
                                        resolve_device)
from mpsearch.profiler._timing import ROUNDS, TRIM

#: pairs measured when none are given: weights 8/4/2 x activations 8/4.
DEFAULT_PAIRS: tuple[tuple[int, int], ...] = ((8, 8), (8, 4), (4, 8), (4, 4), (2, 8), (2, 4))



def _packing_note(dev: torch.device) -> str:
    """What the pairs' latencies differ by on ``dev``: packed low-bit linears, or nothing but noise."""
    from mpsearch.execution.kernels import packed

    if packed.usable(dev):
        return ("Linear layers of 2-4 weight bits run on packed kernels (int4 two codes a byte, int2 four; "
                "kernels.packed), so they read fewer bytes than w8 and can be faster; convs store every width "
                "2..8 in int8 and run the same kernels, so there the pairs differ only by noise.")
    return ("Codes of every width 2..8 are stored in int8 and multiplied by the same kernels (no packed "
            "kernels here: they need numba and AVX-512 VNNI), so fewer bits are NOT faster here: the pairs "
            "differ only by noise, and no speed-up is assumed.")

def _load_avg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def profile_device(model_or_layers: nn.Module | Sequence[Layer], example_inputs: Any = None,
                   device: str | torch.device = "cpu", pairs: Sequence[Any] | str | None = None,
                   batch: int | Sequence[int] = 1, warmup: int = 10, repeats: int = 50,
                   name: str | None = None, base_profile: HardwareProfile | None = None,
                   threads: int | None = 1, calib_batches: Iterable[Any] | None = None,
                   description: str | None = None, label: str | None = None) -> HardwareProfile:
    """Measure the LUT of ``model_or_layers`` on this machine and return a measured profile.

    Args:
        model_or_layers: a float model (timed in context, quantized at each pair), or layers
            (each timed alone: kernel + requant epilogue).
        example_inputs: input tensor(s) ``(N, ...)`` of the model (rows repeated up to ``batch``);
            not needed for layers.
        device: "cpu" or "cuda".
        pairs: (w, a) pairs to measure ("w8a8,w4a8", keys or tuples); default
            :data:`DEFAULT_PAIRS`. w8a8 is always measured (the roofline's widest rate).
        batch: examples per run, or several batch sizes (each gets its own LUT entries).
        warmup, repeats: untimed and timed runs per measurement.
        name: profile name (default ``"<device>-measured"``).
        base_profile: a profile whose LUT is kept and pooled with the new measurements.
        threads: torch intra-op threads during measurement (default 1: stable on a shared
            machine); None leaves torch's setting.
        calib_batches: calibration batches for quantizing the model (default: the example batch).
        description: one line for ``mpsearch profiles`` (default: says what was measured).
        label: what was measured, for the notes (default: the model's class name).

    Returns:
        A :class:`HardwareProfile` with ``source.kind: measured``; write it with ``write_profile``.

    Raises:
        ConfigError: bad device (or CUDA missing), pairs, batch, warmup, repeats or inputs.
    """
    dev = resolve_device(device)
    pair_list = list(parse_pairs(pairs if pairs is not None else DEFAULT_PAIRS, "pairs"))
    if (8, 8) not in pair_list:
        pair_list.insert(0, (8, 8))
    batches = [batch] if isinstance(batch, int) else list(batch)
    _check_counts(warmup, repeats, batches, threads)
    if not batches:
        raise rule_error("profile", "batch", "a positive integer or a non-empty list of them", batch)
    measured: dict[SignatureKey, dict[str, list[LatencyStat]]] = defaultdict(lambda: defaultdict(list))
    is_model = isinstance(model_or_layers, nn.Module)
    load_start = _load_avg()  # 1, 5, 15-minute load averages: how busy the machine was
    if is_model:
        if example_inputs is None:
            raise rule_error("profile", "example_inputs", "given when profiling a model", None)
        what = label or type(model_or_layers).__name__
        grid = measure_model_grid(model_or_layers, example_inputs, pair_list, batches, dev, warmup, repeats,
                                  threads, calib_batches)
        for (b, (w, a)), (layers, timing) in grid.items():
            for layer in layers:
                op, shape = layer_signature(layer, b)
                measured[signature_key(op, shape)][pair_key(w, a)].append(timing.layers[layer.name])
        how = ("in context: each model quantized uniformly at each pair, converted with to_integer, and every "
               "integer op timed while the program runs; a layer's latency is its conv/linear kernel + requant "
               "epilogue + the non-layer ops attributed to it (an op belongs to the layer that produced its first "
               "input; input quantization to the first layer, output dequantization to the last), so a model's "
               f"layers add up to its end-to-end latency; every batch x pair of the model timed interleaved over "
               f"{ROUNDS} rounds")
    else:
        layers = list(model_or_layers)
        if not layers or not all(isinstance(x, Layer) for x in layers):
            raise rule_error("profile", "model_or_layers", "an nn.Module or a non-empty list of Layer",
                             type(model_or_layers).__name__)
        what = label or f"{len(layers)} layers"
        for b in batches:
            for layer in layers:
                op, shape = layer_signature(layer, b)
                key = signature_key(op, shape)
                for w, a in pair_list:
                    if pair_key(w, a) in measured[key]:
                        continue  # a repeated signature is measured once
                    stat = measure_layer(layer, (w, a), dev, b, warmup, repeats, threads)
                    measured[key][pair_key(w, a)].append(stat)
        how = ("isolated: each layer's conv/linear kernel + requant epilogue on random codes of the pair's "
               "ranges (non-layer ops such as residual adds and pools are not included)")
    machine = machine_description(dev, threads)
    today = datetime.date.today().isoformat()
    notes = (f"Measured by mpsearch's profiler on {machine}, {today}. Measured: {what}, batch "
             f"{', '.join(map(str, batches))}, {warmup} warm-up + {repeats} timed runs per measurement "
             f"(time.perf_counter{', CUDA synchronised per op' if dev.type == 'cuda' else ''}); load average "
             f"(1/5/15 min) {load_start} at the start, {_load_avg()} at the end. Timing {how}. Latencies in ms: "
             f"mean, std, count over the fastest {1 - TRIM:.0%} of the timed runs (ranked by the program's "
             "end-to-end time, the same runs for every layer: load from other processes only adds time, in bursts, "
             "so the fastest runs are the reproducible quantity; layers sharing a signature are pooled). "
             f"{_packing_note(dev)} Roofline fitted to the LUT (fit_roofline) as one w8a8 rate that every pair falls back to."
             + (" One intra-op thread gives stable timings on a shared machine." if threads == 1 else ""))
    if base_profile is not None:
        base_notes = base_profile.source.get("notes", "")
        if base_profile.source.get("machine") == machine:  # same machine: only say what was added
            notes = (f"{base_notes} Also measured ({today}): {what}, batch {', '.join(map(str, batches))}, "
                     f"{warmup} + {repeats} runs, timing {how.split(':')[0]}; load average {load_start} at the start, {_load_avg()} at the end.")
        else:
            notes = base_notes + "\n" + notes
    name = name or f"{dev.type}-measured"
    description = description or (base_profile.description if base_profile is not None else
                                  f"measured with the integer executor on {machine.split(';')[0]}")
    return build_profile(measured, name, description, notes, machine, base_profile)


def lut_table(profile: HardwareProfile) -> list[dict[str, Any]]:
    """One row per LUT entry: op, shape summary, each pair's mean ms, and the ratio to w8a8.

    The ratio column is how the profile shows honestly whether fewer bits are faster.
    """
    rows = []
    for e in profile.cost.lut:
        s = e.shape
        shape = (f"b{s['batch']} {s['in_features']}->{s['out_features']}" if e.op == "linear" else
                 f"b{s['batch']} {s['cin']}->{s['cout']} {'x'.join(map(str, s['in_hw']))} "
                 f"k{'x'.join(map(str, s['kernel']))} s{'x'.join(map(str, s['stride']))} g{s['groups']}")
        row: dict[str, Any] = {"op": e.op, "shape": shape}
        base = e.latency_ms.get("w8a8")
        for k, st in e.latency_ms.items():
            row[k] = st.mean
        if base is not None:
            others = [st.mean / base.mean for k, st in e.latency_ms.items() if k != "w8a8"]
            row["min_ratio_to_w8a8"] = min(others) if others else 1.0
        rows.append(row)
    return rows


__all__ = ["DEFAULT_PAIRS", "lut_table", "profile_device"]
