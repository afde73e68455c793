"""Timing of the integer executor's kernels, for the profiler: the statistics, and programs timed
in context.

Two ways to time a layer, both running the executor's own kernels
(``mpsearch.execution.kernels.KERNELS``) on int8 codes with int32 accumulation:

* **isolated** (:func:`mpsearch.profiler._isolated.time_isolated_layer`): a one-layer integer
  program built from a layer's signature, the conv / linear kernel followed by its
  requantization epilogue (int32 accumulator -> a_bits codes, one dyadic rescale), on random
  codes of the pair's ranges;
* **in context** (:func:`time_programs`): every op of an :class:`IntegerModel` timed while the
  program runs, as :meth:`IntegerModel.run` runs it, with each op's time attributed to a layer
  (:func:`attribute_ops`), so that the per-layer times add up to the end-to-end latency. Several
  programs (e.g. one model at every pair and batch) are timed interleaved in rounds, and the
  per-layer means are taken over the runs whose end-to-end time is among the fastest quarter
  (:data:`TRIM`), the same runs for every layer.

Both time the kernel calls the executor makes (``IntegerModel.steps``): with numba on CPU a conv
or linear and the requant of its accumulator are one call, timed as one op.

The per-op clock reads cost about 0.1 us each (two per op); measured, the loop overhead they add
(``ProgramTiming.unattributed_ms``) was about 2% of the demo models' end-to-end time at batch 1
and under 0.2% at batch 256, far below the run-to-run noise of a shared machine.

Attribution rule (in context): a conv / linear op belongs to its layer; any other op (requant,
residual rescale, add, clamp, pool, reshape) belongs to the layer that produced its FIRST input,
followed back through non-layer ops; ops fed only by the model input, and the input
quantization, belong to the first layer of the program; the output dequantization belongs to
the layer that produced the output.

Times are in milliseconds.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from mpsearch.core.profile import LatencyStat
from mpsearch.errors import ConfigError


@contextlib.contextmanager
def intra_op_threads(n_threads: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for the block (None: leave as is), then restore."""
    before = torch.get_num_threads()
    if n_threads:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: fraction of the slowest repeats dropped before the mean: the mean is over the fastest quarter.
#: On a shared 2-core machine another process's load is bursty and only ever ADDS time (the same
#: program at batch 1 was seen to flip between 1.8 ms and 3.7 ms from one 0.1 s window to the
#: next), so the fastest runs are the reproducible quantity; the mean of the fastest 90% moved by
#: up to 2x between back-to-back measurements of the same program. The profiler and the latency
#: benchmark use this same rule on both sides of the comparison.
TRIM = 0.75


def keep_fastest(samples_ms: Sequence[float], trim: float = TRIM) -> list[int]:
    """Indices of the repeats kept: all but the slowest ``trim`` fraction (at least one kept)."""
    n_keep = max(1, len(samples_ms) - int(len(samples_ms) * trim))
    return sorted(sorted(range(len(samples_ms)), key=lambda i: samples_ms[i])[:n_keep])


def stat_of(samples_ms: Sequence[float], trim: float = TRIM) -> LatencyStat:
    """Mean, sample standard deviation and count of repeated timings (ms), slowest ``trim`` dropped."""
    samples_ms = [samples_ms[i] for i in keep_fastest(samples_ms, trim)]
    n = len(samples_ms)
    mean = math.fsum(samples_ms) / n
    var = math.fsum((t - mean) ** 2 for t in samples_ms) / (n - 1) if n > 1 else 0.0
    return LatencyStat(mean=mean, std=math.sqrt(var), count=n)


def pool_stats(stats: Sequence[LatencyStat]) -> LatencyStat:
    """Pooled mean / std / count of several measurements of one quantity (count-weighted)."""
    n = sum(s.count for s in stats)
    mean = math.fsum(s.mean * s.count for s in stats) / n
    # total sum of squares = within + between
    ss = math.fsum((s.count - 1) * s.std ** 2 + s.count * (s.mean - mean) ** 2 for s in stats)
    return LatencyStat(mean=mean, std=math.sqrt(ss / (n - 1)) if n > 1 else 0.0, count=n)


# -- in context: every op of an integer program --------------------------------------------
def attribute_ops(imodel: Any) -> list[str]:
    """Layer name that owns each op of ``imodel`` (see the module docstring for the rule)."""
    acc_to_layer = {acc: layer for layer, acc in imodel.meta.get("layers", {}).items()}
    if not acc_to_layer:
        raise ConfigError("profile: the integer program must record its layers (meta['layers']), but it has none")
    first = next((acc_to_layer[op.name] for op in imodel.ops if op.name in acc_to_layer), None)
    owner_of_value: dict[str, str] = {inp.name: first for inp in imodel.inputs}  # type: ignore[misc]
    owners = []
    for op in imodel.ops:
        owner = acc_to_layer.get(op.name) or owner_of_value.get(op.inputs[0] if op.inputs else "", first)
        owner_of_value[op.name] = owner  # type: ignore[assignment]
        owners.append(owner)
    return owners  # type: ignore[return-value]


@dataclass(frozen=True)
class ProgramTiming:
    """In-context timing of one program: per-layer stats, and the end-to-end stat (ms)."""

    layers: Mapping[str, LatencyStat]
    end_to_end: LatencyStat
    unattributed_ms: float  # mean end-to-end minus the sum of per-layer means (loop overhead)


#: timed repeats are spread over this many rounds; each round runs every program in turn, so a
#: burst of load from another process falls on all programs alike instead of on one of them.
ROUNDS = 5


def round_sizes(repeats: int, rounds: int) -> list[int]:
    """Timed repeats per round: ``repeats`` split as evenly as possible over ``rounds`` (>= 1 each)."""
    rounds = max(1, min(rounds, repeats))
    return [repeats // rounds + (1 if r < repeats % rounds else 0) for r in range(rounds)]


class _ProgramRunner:
    """One integer program prepared for timing: kernels, op owners, when each value dies."""

    def __init__(self, imodel: Any, x: Tensor, device: torch.device) -> None:
        from mpsearch.execution._steps import last_reads

        imodel.to(device)
        self.imodel, self.x, self.device = imodel, x.to(device), device
        # the kernel calls IntegerModel.run makes (a fused conv + requant is one call, owned by
        # the conv's layer: the requant's owner by the attribution rule anyway)
        self.steps = imodel.steps()
        op_owners = attribute_ops(imodel)
        self.owners = [op_owners[step.ops[0]] for step in self.steps]
        self.first = op_owners[0]
        self.out_owner = op_owners[[op.name for op in imodel.ops].index(imodel.output.name)]
        self.last_use = last_reads(self.steps)
        self.names = list(dict.fromkeys(self.owners))
        self.per_layer: dict[str, list[float]] = {n: [] for n in self.names}
        self.e2e: list[float] = []

    def run_once(self, keep: bool) -> None:
        """One run as :meth:`IntegerModel.__call__` runs it, every step timed (recorded if ``keep``)."""
        imodel, device, clock = self.imodel, self.device, time.perf_counter
        acc = dict.fromkeys(self.names, 0.0)
        sync(device)
        start = t0 = clock()
        codes = imodel.quantize_input(self.x)
        sync(device)
        t1 = clock()
        acc[self.first] += t1 - t0
        env = {inp.name: c for inp, c in zip(imodel.inputs, codes)}
        for i, step in enumerate(self.steps):
            t0 = clock()
            env[step.output] = step.kernel(*(env[n] for n in step.inputs))
            for n in step.inputs:
                if self.last_use.get(n) == i and n != imodel.output.name:
                    env.pop(n, None)
            sync(device)
            t1 = clock()
            acc[self.owners[i]] += t1 - t0
        t0 = clock()
        imodel.dequantize(env[imodel.output.name])
        sync(device)
        end = clock()
        acc[self.out_owner] += end - t0
        if keep:
            self.e2e.append((end - start) * 1e3)
            for n in self.names:
                self.per_layer[n].append(acc[n] * 1e3)

    def timing(self, trim: float = TRIM) -> ProgramTiming:
        """Per-layer means over the runs kept by the end-to-end rule, so the layers still add up."""
        kept = keep_fastest(self.e2e, trim)
        layers = {n: stat_of([v[i] for i in kept], 0.0) for n, v in self.per_layer.items()}
        total = stat_of([self.e2e[i] for i in kept], 0.0)
        return ProgramTiming(layers=layers, end_to_end=total,
                             unattributed_ms=total.mean - math.fsum(s.mean for s in layers.values()))


def time_programs(programs: Sequence[tuple[Any, Tensor]], device: torch.device, warmup: int, repeats: int,
                  rounds: int = ROUNDS) -> list[ProgramTiming]:
    """Time every op of several programs, interleaved: ``[(imodel, float input), ...]`` -> timings.

    Each program first runs ``warmup`` untimed times; then the ``repeats`` timed runs of each are
    split over ``rounds`` rounds, and every round runs each program in turn (the order reversed
    every other round). The loop mirrors :meth:`IntegerModel.run` (same kernels, same freeing of
    dead values); input quantization and output dequantization are timed too. On CUDA each
    step is synchronised so that its wall time is its own.
    """
    runners = [_ProgramRunner(imodel, x, device) for imodel, x in programs]
    for r in runners:
        for _ in range(warmup):
            r.run_once(keep=False)
    for k, n_runs in enumerate(round_sizes(repeats, rounds)):
        for r in (runners if k % 2 == 0 else runners[::-1]):
            for _ in range(n_runs):
                r.run_once(keep=True)
    return [r.timing() for r in runners]


def time_end_to_end_many(programs: Sequence[tuple[Any, Tensor]], device: torch.device, warmup: int, repeats: int,
                         rounds: int = ROUNDS) -> list[LatencyStat]:
    """Wall time of ``imodel(x)`` (float in, float out, as users call it) for several programs, in ms.

    Interleaved as in :func:`time_programs`, with the same estimator (:func:`stat_of`).
    """
    progs = []
    for imodel, x in programs:
        imodel.to(device)
        progs.append((imodel, x.to(device)))
    samples: list[list[float]] = [[] for _ in progs]
    with torch.no_grad():
        for imodel, x in progs:
            for _ in range(warmup):
                imodel(x)
        sync(device)
        order = list(range(len(progs)))
        for k, n_runs in enumerate(round_sizes(repeats, rounds)):
            for j in (order if k % 2 == 0 else order[::-1]):
                imodel, x = progs[j]
                for _ in range(n_runs):
                    sync(device)
                    t0 = time.perf_counter()
                    imodel(x)
                    sync(device)
                    samples[j].append((time.perf_counter() - t0) * 1e3)
    return [stat_of(s) for s in samples]
