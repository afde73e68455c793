"""Measuring LLM weight formats: linear layers timed on the executor's own weight-only kernels.

    stat = measure_format(layer, "w4a16g128", batch=1)            # one layer, one format
    profile = profile_formats(layers, ["w4a16g128", "w8a16"], base_profile=load_profile("x86-2core-int"))

What is timed for each format key (:mod:`mpsearch.core.formats`) is what the executor runs for a
layer of that format (:func:`mpsearch.execution.kernels.weight_only.prepare_wo_linear`), on a
float32 input ``(rows, in_features)`` (a float island's value; ``rows`` = examples x tokens):

* ``w4a16g<G>`` (G in 32..256, out features a multiple of 16): ``_weight_int4pack_mm_for_cpu``
  on the packed weight, activations cast to bfloat16 and back per call;
* ``w8a16``: ``_weight_int8pack_mm`` with per-channel scales, bfloat16 activations;
* other widths and layouts (``w2a16g128``, ``w3a16g128``, ``w8a16g128``, zero points): the int8
  codes unpacked to float32 per call, then float32 ``F.linear``;
* ``w16a16``: **float32** ``F.linear`` on a float32 weight: the executor keeps no 16-bit kernel,
  a layer kept in float runs as a float island in float32.

Random codes of the format's range, random scales; a layer with a bias gets one. The stats are
merged into the LUT of ``base_profile`` under the format key (see :func:`merge_format_entries`);
the base's capabilities, roofline and other entries are kept as they are.
"""

from __future__ import annotations

import datetime
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F

from mpsearch.core.profile import CostModel, HardwareProfile, LatencyStat, LutEntry
from mpsearch.core.types import Candidate, Layer
from mpsearch.errors import ConfigError, rule_error
from mpsearch.hardware.signature import SignatureKey, layer_signature, signature_key
from mpsearch.profiler._timing import intra_op_threads, pool_stats, stat_of

#: what is timed for w16a16 (said in the profile's notes)
W16_KERNEL = ("float32 F.linear on a float32 weight, what the float model runs (the executor has no 16-bit kernel: "
              "to_integer refuses a w16a16 layer)")


def _format_kernel(layer: Layer, c: Candidate, rows: int, g: torch.Generator) -> Any:
    """The executor's kernel for a linear layer of format ``c``, built on random codes."""
    n, k = int(layer.weight_shape[0]), int(layer.weight_shape[1])
    has_bias = layer.n_params > layer.n_weights
    bias = torch.randn(n, generator=g) if has_bias else None
    if c.w_bits == 16:
        w = torch.randn(n, k, generator=g) / k ** 0.5
        return lambda x: F.linear(x, w, bias)
    from mpsearch.execution import ir
    from mpsearch.execution.kernels.weight_only import prepare_wo_linear

    groups = k // c.group_size if c.group_size is not None else 1
    if c.w_zero_point:  # asymmetric: codes 0..2^b-1 around a zero point per group
        codes = torch.randint(0, min(2 ** c.w_bits, 128), (n, k), generator=g, dtype=torch.int8)
        zp = torch.randint(0, min(2 ** c.w_bits, 128), (n, groups), generator=g, dtype=torch.int32)
    else:
        q = 2 ** (c.w_bits - 1) - 1
        codes = torch.randint(-q, q + 1, (n, k), generator=g, dtype=torch.int8)
        zp = torch.zeros(n, groups, dtype=torch.int32)
    scale = torch.rand(n, groups, generator=g) * 1e-2 + 1e-3
    op = ir.WeightOnlyLinear(name="y", inputs=("x",), source="profiler", codes=codes, scale=scale, zp=zp,
                             bias=bias, group_size=c.group_size, w_bits=c.w_bits)
    return prepare_wo_linear(op, torch.device("cpu"), None)  # type: ignore[arg-type]


def check_format_layer(layer: Layer, key: str) -> Candidate:
    """The candidate of ``key`` for ``layer``: a weight-only format of a linear layer whose group divides it."""
    c = Candidate.parse(key, "profile: --formats")
    if c.a_bits != 16:
        raise rule_error("profile", "--formats", "weight-only formats (a_bits 16, e.g. w4a16g128, w8a16, w16a16)",
                         key)
    if layer.kind != "linear":
        raise rule_error("profile", f"layer {layer.name!r}", "a linear layer to measure a format on", layer.kind)
    k = int(layer.weight_shape[1])
    if c.group_size is not None and k % c.group_size:
        raise ConfigError(f"profile: layer {layer.name!r}: group size of {key} must divide the layer's {k} input "
                          f"features, but got {c.group_size}")
    return c


def measure_format(layer: Layer, key: str, batch: int = 1, warmup: int = 10, repeats: int = 50,
                   threads: int | None = 1, seed: int = 0) -> LatencyStat:
    """Latency (ms) of one linear layer at format ``key`` for ``batch`` examples, on the CPU.

    Rows of the GEMM are ``batch`` x the layer's tokens (its input is ``[B, T, D]``), as in
    its LUT signature. Mean / std / count over the fastest runs (:func:`stat_of`).
    """
    c = check_format_layer(layer, key)
    _, shape = layer_signature(layer, batch)
    rows = int(shape["batch"])
    g = torch.Generator().manual_seed(seed)
    with intra_op_threads(threads), torch.no_grad():
        kernel = _format_kernel(layer, c, rows, g)
        x = torch.randn(rows, int(layer.weight_shape[1]), generator=g)
        samples = []
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            kernel(x)
            if i >= warmup:
                samples.append((time.perf_counter() - t0) * 1e3)
    return stat_of(samples)


def merge_format_entries(base: HardwareProfile, measured: dict[SignatureKey, dict[str, list[LatencyStat]]],
                         notes: str | None = None, name: str | None = None,
                         replace_keys: bool = False) -> HardwareProfile:
    """``base`` with format-keyed stats added to its LUT (pooled with any already there, or
    replacing them with ``replace_keys``: a new measurement method supersedes the old one).

    Existing entries keep all their keys; a new signature gets a new entry at the end. The
    capabilities, roofline and everything else of ``base`` are kept. Every key must be a format
    ``base`` lists (``capabilities.formats``).
    """
    fmts = base.capabilities.formats
    for by_key in measured.values():
        for k in by_key:
            if fmts is None or k not in fmts.keys:
                listed = ", ".join(fmts.keys) if fmts is not None else "none"
                raise ConfigError(f"profile: --formats must be formats {base.name} lists in capabilities.formats "
                                  f"({listed}), but got {k!r}")
    lut, done = [], set()
    for e in base.cost.lut:
        sig = signature_key(e.op, e.shape)
        stats = dict(e.latency_ms)
        for k, new in measured.get(sig, {}).items():
            stats[k] = pool_stats([stats[k], *new] if k in stats and not replace_keys else new)
        lut.append(LutEntry(op=e.op, shape=e.shape, latency_ms=stats) if sig in measured else e)
        done.add(sig)
    for sig, by_key in measured.items():
        if sig not in done:
            op, items = sig
            lut.append(LutEntry(op=op, shape=dict(items), latency_ms={k: pool_stats(v) for k, v in by_key.items()}))
    source = dict(base.source)
    if notes:
        source["notes"] = f"{source.get('notes', '')} {notes}".strip()
    cost = CostModel(roofline=base.cost.roofline, lut=tuple(lut), energy=base.cost.energy, memory=base.cost.memory)
    return replace(base, name=name or base.name, source=source, cost=cost, path=None)


def profile_formats(layers: Iterable[Layer], keys: Sequence[str], base_profile: HardwareProfile,
                    batch: int | Sequence[int] = 1, warmup: int = 10, repeats: int = 50, threads: int | None = 1,
                    name: str | None = None, label: str | None = None) -> HardwareProfile:
    """Measure every weight-only format in ``keys`` on every linear layer and merge into ``base_profile``.

    A repeated signature is measured once. Formats whose group does not divide a layer's input
    features are skipped for that layer. Notes say what, how, the kernels and the load average.
    """
    from mpsearch.profiler.device import _load_avg

    layers = [x for x in layers if x.kind == "linear"]
    if not layers:
        raise rule_error("profile", "layers", "at least one linear layer to measure formats on", 0)
    batches = [batch] if isinstance(batch, int) else list(batch)
    load_start = _load_avg()
    measured: dict[SignatureKey, dict[str, list[LatencyStat]]] = defaultdict(lambda: defaultdict(list))
    for b in batches:
        for layer in layers:
            op, shape = layer_signature(layer, b)
            sig = signature_key(op, shape)
            for key in keys:
                c = Candidate.parse(key, "profile: --formats")
                g = c.group_size
                if c.key in measured[sig] or (g is not None and int(layer.weight_shape[1]) % g):
                    continue
                measured[sig][c.key].append(measure_format(layer, c.key, b, warmup, repeats, threads))
    today = datetime.date.today().isoformat()
    from mpsearch.profiler._build import machine_description

    machine = machine_description(torch.device("cpu"), threads)
    notes = (f"Formats measured ({today}) by the profiler (profile_formats) on {machine}: {', '.join(keys)} on "
             f"{label or f'{len(layers)} linear layers'}, batch {', '.join(map(str, batches))}, {warmup} + {repeats} "
             f"runs, {threads or torch.get_num_threads()} thread(s), each layer isolated on the executor's own "
             "weight-only kernels with a float32 input (int4 groups: _weight_int4pack_mm_for_cpu; w8a16: "
             "_weight_int8pack_mm, both with bfloat16 activations; other widths unpacked from int8 codes to float32 "
             f"per call); w16a16 is {W16_KERNEL}. Mean of the fastest 25% of runs (stat_of, as the LUT's other "
             "entries); load average (1/5/15 min) "
             f"{load_start} at the start, {_load_avg()} at the end.")
    return merge_format_entries(base_profile, {k: dict(v) for k, v in measured.items()}, notes, name)


def profile_formats_in_context(model: torch.nn.Module, example_inputs: torch.Tensor, keys: Sequence[str],
                                base_profile: HardwareProfile, calib: Sequence[Any], warmup: int = 5,
                                repeats: int = 50, threads: int | None = 1, name: str | None = None,
                                label: str | None = None) -> HardwareProfile:
    """Measure ``keys`` on ``model``'s linear layers in context and merge them into ``base_profile``.

    See :mod:`mpsearch.profiler._formats_context`: each format's uniform program runs as it runs in
    use, its ``wo_linear`` calls timed; w16a16 is the float model run eagerly (float32 F.linear).
    Entries of the same signature and key are replaced (layers sharing a signature are pooled).
    """
    from mpsearch.model import discover
    from mpsearch.profiler._build import machine_description
    from mpsearch.profiler._formats_context import time_formats_in_context
    from mpsearch.profiler.device import _load_avg

    keys = [Candidate.parse(k, "profile: --formats").key for k in keys]
    x = example_inputs
    layers = discover(model, x)
    for layer in layers:
        if layer.kind == "linear":
            for k in keys:
                check_format_layer(layer, k)
    load_start = _load_avg()
    with intra_op_threads(threads):
        timed = time_formats_in_context(model, x, layers, keys, base_profile, calib, warmup, repeats)
    measured: dict[SignatureKey, dict[str, list[LatencyStat]]] = defaultdict(lambda: defaultdict(list))
    for layer in layers:
        if layer.kind == "linear":
            op, shape = layer_signature(layer)
            for k in keys:
                measured[signature_key(op, shape)][k].append(timed[k][layer.name])
    machine = machine_description(torch.device("cpu"), threads)
    notes = (f"Formats measured in context ({datetime.date.today().isoformat()}) on {machine}: {', '.join(keys)} "
             f"on {label or type(model).__name__}, input {tuple(x.shape)}, {warmup} + {repeats} runs interleaved "
             "over rounds: each format's uniform program (to_integer, float islands declared) run as a whole, every "
             "wo_linear kernel call timed where the program makes it (weights and inputs as warm as in use); "
             f"w16a16: {W16_KERNEL}, timed by hooks in the float model run eagerly. Means over the runs whose "
             f"end-to-end time is among the fastest 25%; load average (1/5/15 min) {load_start} at the start, "
             f"{_load_avg()} at the end. These entries replace isolated measurements of the same signatures.")
    return merge_format_entries(base_profile, {k: dict(v) for k, v in measured.items()}, notes, name,
                                replace_keys=True)


__all__ = ["W16_KERNEL", "check_format_layer", "measure_format", "merge_format_entries", "profile_formats",
           "profile_formats_in_context"]
