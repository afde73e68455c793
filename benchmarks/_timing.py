"""Timing helpers shared by the speed benchmarks (interleaved medians, per-kernel fastest calls)."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def _no_sync() -> None:
    return None


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int,
                     sync: Callable[[], None] = _no_sync) -> dict[str, float]:
    """Median seconds of each ``fns[k]()`` over ``repeats`` runs, after 3 warm-ups each.

    The runs are interleaved (one run of each function per round, the order reversed every other
    round), so a burst of load from another process falls on all of them alike and the ratios
    between them compare like with like. ``sync`` waits for an asynchronous device (CUDA) around
    each timed call.
    """
    for fn in fns.values():
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for r in range(repeats):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            sync()
            start = time.perf_counter()
            fns[k]()
            sync()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def fastest_steps(imodel: Any, x: Any, repeats: int, sync: Callable[[], None] = _no_sync) -> tuple[list[float], dict]:
    """Fastest seconds of each kernel call of an integer program on ``x`` over ``repeats`` (+3 warm-up) runs.

    Returns the per-step times (in ``imodel.steps()`` order) and the last run's environment
    (step output name -> tensor), for printing shapes.
    """
    steps = imodel.steps()
    best = [float("inf")] * len(steps)
    codes = imodel.quantize_input(x)
    env: dict = {}
    for _ in range(repeats + 3):
        env = {inp.name: c for inp, c in zip(imodel.inputs, codes)}
        for k, step in enumerate(steps):
            args = [env[n] for n in step.inputs]
            start = time.perf_counter()
            env[step.output] = step.kernel(*args)
            sync()
            best[k] = min(best[k], time.perf_counter() - start)
    return best, env


def print_fastest_steps(imodel: Any, x: Any, repeats: int, sync: Callable[[], None] = _no_sync) -> None:
    """Print each kernel call of an integer program: ops fused in it, output, shape, fastest ms, weight shape."""
    best, env = fastest_steps(imodel, x, repeats, sync)
    for step, t in zip(imodel.steps(), best):
        ops = "+".join(imodel.ops[i].KIND for i in step.ops)
        first = imodel.ops[step.ops[0]]
        what = f"weight {tuple(first.weight.shape)}" if hasattr(first, "weight") else ""
        print(f"{ops:<22} {step.output:<28} {str(tuple(env[step.output].shape)):<20} {t * 1e3:8.3f} ms  {what}")
    print(f"executor: sum of the fastest calls {sum(best) * 1e3:.3f} ms")
