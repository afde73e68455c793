"""Measure a latency LUT on this machine with the integer executor, fit a roofline, write a profile.

    profile = profile_device(model, example_inputs, device="cpu", batch=1, name="my-cpu")
    write_profile(profile, "hw_profiles/my-cpu.yaml")
    stat = measure_layer(layer, (4, 8), device="cpu", batch=1)     # one layer, isolated

What is timed is what :class:`mpsearch.execution.IntegerModel` runs (see
:mod:`mpsearch.execution._timing`):

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
import platform
import re
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from mpsearch.core.profile import Capabilities, CostModel, HardwareProfile, LatencyStat, LutEntry
from mpsearch.core.types import VALID_BITS, Candidate, Layer
from mpsearch.errors import ConfigError, rule_error
from mpsearch.hardware._check import pair_key, parse_pair_key
from mpsearch.execution._timing import (
    ROUNDS,
    TRIM,
    ProgramTiming,
    intra_op_threads,
    pool_stats,
    time_isolated_layer,
    time_programs,
)
from mpsearch.hardware.costs import roofline_work
from mpsearch.hardware.fit import RooflineSample, fit_roofline
from mpsearch.hardware.signature import SignatureKey, layer_from_signature, layer_signature, signature_key

#: pairs measured when none are given: weights 8/4/2 x activations 8/4.
DEFAULT_PAIRS: tuple[tuple[int, int], ...] = ((8, 8), (8, 4), (4, 8), (4, 4), (2, 8), (2, 4))
DEVICES = ("cpu", "cuda")
#: what the integer executor runs (mpsearch.execution): any width 2..8 stored in int8.
EXECUTOR_BITS = tuple(b for b in VALID_BITS if 2 <= b <= 8)


# -- small parsers (CLI and API share them) ------------------------------------------------
def parse_pairs(text: str | Sequence[Any], where: str = "--pairs") -> tuple[tuple[int, int], ...]:
    """``"w8a8,w4a8"`` (or a list of keys / ``(w, a)`` tuples) -> ``((8, 8), (4, 8))``.

    Raises:
        ConfigError: naming ``where`` and the bad value; bits must be in 2..8.
    """
    items = [s.strip() for s in text.split(",") if s.strip()] if isinstance(text, str) else list(text)
    if not items:
        raise rule_error("profile", where, "a comma-separated list of pairs like w8a8,w4a8", text)
    out: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, str):
            m = re.fullmatch(r"w(\d{1,2})a(\d{1,2})", item)
            pair = (int(m.group(1)), int(m.group(2))) if m else None
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(b, int) for b in item):
            pair = (int(item[0]), int(item[1]))
        else:
            pair = None
        if pair is None or pair[0] not in EXECUTOR_BITS or pair[1] not in EXECUTOR_BITS:
            raise rule_error("profile", where, "pairs like w8a8,w4a8 with bits in 2..8 (what the integer "
                             "executor runs)", item)
        if pair not in out:
            out.append(pair)
    return tuple(out)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"`` or ``"cuda"`` (``"cuda:1"``) as a torch device; CUDA must be present.

    Raises:
        ConfigError: another device type, or CUDA asked for where torch sees none.
    """
    dev = torch.device(device) if isinstance(device, (str, torch.device)) else None
    if dev is None or dev.type not in DEVICES:
        raise rule_error("profile", "device", "cpu or cuda", device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"profile: device must be one this machine has, but got {str(device)!r} and "
                          "torch.cuda.is_available() is False (no CUDA device or a CPU-only torch build); "
                          "use --device cpu")
    return dev


def _check_counts(warmup: int, repeats: int, batches: Sequence[int], threads: int | None) -> None:
    for key, v, lo in (("warmup", warmup, 0), ("repeats", repeats, 2)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise rule_error("profile", key, f"an integer >= {lo}", v)
    for b in batches:
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise rule_error("profile", "batch", "a positive integer", b)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise rule_error("profile", "threads", "a positive integer or None", threads)


# -- measuring ----------------------------------------------------------------------------
def measure_layer(layer: Layer, pair: tuple[int, int], device: str | torch.device = "cpu", batch: int = 1,
                  warmup: int = 10, repeats: int = 50, threads: int | None = 1, seed: int = 0) -> LatencyStat:
    """Latency of one layer alone in the integer executor: its kernel + requant epilogue.

    Args:
        layer: the layer (only its signature matters: kind, shapes, kernel, stride, groups).
        pair: ``(w_bits, a_bits)``; weights and input codes are drawn in those ranges.
        device: "cpu" or "cuda".
        batch: examples per run.
        warmup, repeats: untimed and timed runs.
        threads: torch intra-op threads during the measurement (None: leave as is).
        seed: seed of the random codes.

    Returns:
        mean / std / count in milliseconds.
    """
    dev = resolve_device(device)
    _check_counts(warmup, repeats, [batch], threads)
    w, a = parse_pairs([pair], "pair")[0]
    with intra_op_threads(threads), torch.no_grad():
        return time_isolated_layer(layer, (w, a), dev, batch, warmup, repeats, seed)


def _batch_of(example_inputs: Any, batch: int) -> torch.Tensor:
    x = example_inputs[0] if isinstance(example_inputs, (tuple, list)) else example_inputs
    if isinstance(example_inputs, (tuple, list)) and len(example_inputs) != 1:
        raise rule_error("profile", "example_inputs", "one input tensor (models with several inputs are not "
                         "supported by the profiler yet)", f"{len(example_inputs)} tensors")
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] < 1:
        raise rule_error("profile", "example_inputs", "a tensor (N, ...) with N >= 1", type(x).__name__)
    reps = -(-batch // x.shape[0])
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:batch].contiguous()


def _integer_program(model: nn.Module, x: torch.Tensor, pair: tuple[int, int],
                     calib: list[Any]) -> tuple[list[Layer], Any]:
    """``model`` at ``x``'s batch: its discovered layers, and its integer program at ``pair``."""
    from mpsearch.core.plan import BitPlan
    from mpsearch.execution import to_integer
    from mpsearch.model import discover
    from mpsearch.quant import quantizable_layer_names, quantize

    layers = discover(model, x)
    qmodel = quantize(model, BitPlan.uniform(quantizable_layer_names(model), *pair), calib)
    return layers, to_integer(qmodel, x[:2].cpu())


def _check_all_layers_ran(layers: Sequence[Layer], timing: ProgramTiming) -> None:
    missing = [layer.name for layer in layers if layer.name not in timing.layers]
    if missing:
        raise ConfigError(f"profile: every discovered layer must run in the integer program, but "
                          f"{', '.join(missing)} did not")


def measure_model_grid(model: nn.Module, example_inputs: Any, pairs: Sequence[tuple[int, int]],
                       batches: Sequence[int], device: str | torch.device = "cpu", warmup: int = 10,
                       repeats: int = 50, threads: int | None = 1, calib_batches: Iterable[Any] | None = None,
                       rounds: int = ROUNDS) -> dict[tuple[int, tuple[int, int]], tuple[list[Layer], ProgramTiming]]:
    """Per-layer latencies of ``model`` at every batch x pair, timed in context and interleaved.

    All the integer programs are built first, then timed together by
    :func:`~mpsearch.execution._timing.time_programs` (``repeats`` runs of each, spread over
    ``rounds`` rounds), so that load from other processes falls on every (batch, pair) alike.

    Returns:
        ``{(batch, (w, a)): (layers, timing)}``.
    """
    dev = resolve_device(device)
    _check_counts(warmup, repeats, list(batches), threads)
    pair_list = parse_pairs(list(pairs), "pairs")
    calib = list(calib_batches) if calib_batches is not None else None
    keys, built, programs = [], [], []
    with intra_op_threads(threads), torch.no_grad():
        for b in batches:
            x = _batch_of(example_inputs, b)
            for pair in pair_list:
                layers, imodel = _integer_program(model, x, pair, calib if calib is not None else [x])
                keys.append((b, pair))
                built.append(layers)
                programs.append((imodel, x))
        timings = time_programs(programs, dev, warmup, repeats, rounds)
    for layers, timing in zip(built, timings):
        _check_all_layers_ran(layers, timing)
    return {k: (layers, t) for k, layers, t in zip(keys, built, timings)}


def measure_model(model: nn.Module, example_inputs: Any, pair: tuple[int, int], device: str | torch.device = "cpu",
                  batch: int = 1, warmup: int = 10, repeats: int = 50, threads: int | None = 1,
                  calib_batches: Iterable[Any] | None = None) -> tuple[list[Layer], ProgramTiming]:
    """Per-layer latencies of ``model`` quantized uniformly at ``pair``, timed in context.

    Returns:
        ``(layers, timing)``: the discovered layers at ``batch`` examples, and
        :class:`~mpsearch.execution._timing.ProgramTiming` (layer name -> stat, end to end).
    """
    w, a = parse_pairs([pair], "pair")[0]
    return measure_model_grid(model, example_inputs, [(w, a)], [batch], device, warmup, repeats, threads,
                              calib_batches)[(batch, (w, a))]


# -- the profile ---------------------------------------------------------------------------
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: torch.device, threads: int | None) -> str:
    """One line naming the device, the torch version and the threads used."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{_cpu_name()} ({platform.machine()}, {os.cpu_count()} logical cores)"
    return f"{what}; torch {torch.__version__}; {threads or torch.get_num_threads()} intra-op thread(s)"


def executor_capabilities() -> Capabilities:
    """What the integer executor runs: w, a in 2..8, symmetric per-channel weights, dyadic."""
    return Capabilities(weight_bits=EXECUTOR_BITS, activation_bits=EXECUTOR_BITS, pairs=None,
                        weight_mode="symmetric", weight_granularity=("per_channel",),
                        activation_mode="asymmetric", scale="dyadic", integer_only=True)


def build_profile(measured: Mapping[SignatureKey, Mapping[str, Sequence[LatencyStat]]], name: str,
                  description: str, notes: str, machine: str,
                  base_profile: HardwareProfile | None = None) -> HardwareProfile:
    """A measured profile from stats per signature and pair key, pooled with ``base_profile``'s LUT.

    The roofline is fitted to every (signature, pair) of the resulting LUT, as one w8a8 rate
    (the executor's kernels do not depend on the bit-width; other pairs fall back to it).
    """
    pooled: dict[SignatureKey, dict[str, list[LatencyStat]]] = defaultdict(lambda: defaultdict(list))
    order: list[SignatureKey] = []
    for e in (base_profile.cost.lut if base_profile is not None else ()):
        key = signature_key(e.op, e.shape)
        order.append(key)
        for k, s in e.latency_ms.items():
            pooled[key][k].append(s)
    for key, by_pair in measured.items():
        if key not in pooled:
            order.append(key)
        for k, stats in by_pair.items():
            pooled[key][k].extend(stats)
    lut, samples = [], []
    for key in order:
        op, shape_items = key
        shape = dict(shape_items)
        stats = {k: pool_stats(v) for k, v in sorted(pooled[key].items(), key=lambda kv: parse_pair_key(kv[0]),
                                                      reverse=True)}
        lut.append(LutEntry(op=op, shape=shape, latency_ms=stats))
        probe = layer_from_signature(op, shape)
        for k, s in stats.items():
            # The executor runs every width with the same int8 kernels, so one rate (w8a8, which
            # every pair falls back to) is fitted to all pairs' samples: a separate rate per pair
            # would only fit noise and could promise a speed-up that does not exist. Bytes are
            # counted at w8a8 too (codes are stored in int8).
            ops, nbytes = roofline_work(probe, Candidate(8, 8))
            samples.append(RooflineSample(pair_key(8, 8), ops, nbytes, s.mean))
    if not any(pair_key(8, 8) in pooled[key] for key in order):
        raise ConfigError("profile: the measurements must include w8a8 (the widest pair, which every other pair "
                          "falls back to in the roofline), but they do not")
    roofline = fit_roofline(samples)
    return HardwareProfile(name=name, description=description,
                           source={"kind": "measured", "notes": notes, "machine": machine},
                           capabilities=executor_capabilities(), cost=CostModel(roofline=roofline, lut=tuple(lut)))


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
             "so the fastest runs are the reproducible quantity; layers sharing a signature are pooled). Codes of every width 2..8 are stored in int8 and multiplied by the same "
             "kernels, so fewer bits are NOT faster here: the pairs differ only by noise, and no speed-up is "
             "assumed. Roofline fitted to the LUT (fit_roofline) as one w8a8 rate that every pair falls back to."
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


__all__ = ["DEFAULT_PAIRS", "build_profile", "executor_capabilities", "lut_table", "measure_layer",
           "measure_model", "parse_pairs", "profile_device", "resolve_device"]
