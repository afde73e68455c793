"""Timing the integer executor: one layer isolated, or every layer of a model in context.

Shared by :func:`mpsearch.profiler.profile_device` and the CLI's argument parsing.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from mpsearch.core.profile import LatencyStat
from mpsearch.core.types import Layer
from mpsearch.errors import ConfigError, rule_error
from mpsearch.profiler._build import EXECUTOR_BITS
from mpsearch.profiler._isolated import time_isolated_layer
from mpsearch.profiler._timing import ROUNDS, ProgramTiming, intra_op_threads, time_programs

DEVICES = ("cpu", "cuda")


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
    :func:`~mpsearch.profiler._timing.time_programs` (``repeats`` runs of each, spread over
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
        :class:`~mpsearch.profiler._timing.ProgramTiming` (layer name -> stat, end to end).
    """
    w, a = parse_pairs([pair], "pair")[0]
    return measure_model_grid(model, example_inputs, [(w, a)], [batch], device, warmup, repeats, threads,
                              calib_batches)[(batch, (w, a))]
