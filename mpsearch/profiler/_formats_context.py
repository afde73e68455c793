"""Weight-only formats timed IN CONTEXT: a model's linear layers as its program runs them.

For each format the model is quantized uniformly (every linear layer, and any embedding whose
weight a linear layer shares, at that format), built with ``to_integer`` (float islands
declared), and run on the example input; each ``wo_linear`` kernel call is timed as the program
makes it (the loop of ``IntegerModel.run``), so the weights and inputs are as warm or cold as
they are when the model runs, not as in a tight loop over one layer. ``w16a16``: the executor
has no 16-bit kernel (``to_integer`` refuses it), so the float model runs eagerly and each
``nn.Linear`` (float32 ``F.linear``) is timed by forward hooks.

The programs run interleaved in rounds; a layer's stat is over the runs whose end-to-end time is
among the fastest quarter (the same runs for every layer, as :mod:`mpsearch.profiler._timing`).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch
from torch import nn

from mpsearch.core.profile import HardwareProfile, LatencyStat
from mpsearch.core.types import Layer
from mpsearch.profiler._timing import ROUNDS, keep_fastest, round_sizes, stat_of


class _Program:
    """The integer program of one uniform format, its wo_linear steps mapped to layer names."""

    def __init__(self, imodel: Any, x: torch.Tensor, names: Sequence[str]) -> None:
        from mpsearch.execution._steps import last_reads

        self.imodel, self.x, self.steps = imodel, x, imodel.steps()
        self.last = last_reads(self.steps)
        op_to_layer = {op: layer for layer, op in imodel.meta.get("layers", {}).items() if layer in names}
        self.owner = {i: op_to_layer[imodel.ops[s.ops[0]].name] for i, s in enumerate(self.steps)
                      if imodel.ops[s.ops[0]].KIND == "wo_linear" and imodel.ops[s.ops[0]].name in op_to_layer}
        missing = set(names) - set(self.owner.values())
        if missing:
            raise RuntimeError(f"profile: no wo_linear step for {sorted(missing)}")

    def run_once(self) -> tuple[dict[str, float], float]:
        imodel, clock = self.imodel, time.perf_counter
        per: dict[str, float] = dict.fromkeys(self.owner.values(), 0.0)
        start = clock()
        env = {inp.name: c for inp, c in zip(imodel.inputs, imodel.quantize_input(self.x))}
        for i, step in enumerate(self.steps):
            t0 = clock()
            env[step.output] = step.kernel(*(env[n] for n in step.inputs))
            if i in self.owner:
                per[self.owner[i]] += clock() - t0
            for n in step.inputs:
                if self.last.get(n) == i and n != imodel.output.name:
                    env.pop(n, None)
        imodel.dequantize(env[imodel.output.name])
        return {k: v * 1e3 for k, v in per.items()}, (clock() - start) * 1e3


class _FloatProgram:
    """The float model run eagerly, each named nn.Linear timed by hooks (w16a16: float32 F.linear)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> None:
        self.model, self.x, self.per, self._t0 = model, x, dict.fromkeys(names, 0.0), 0.0
        for n in names:
            m = model.get_submodule(n)
            m.register_forward_pre_hook(lambda *_: setattr(self, "_t0", time.perf_counter()))
            m.register_forward_hook(lambda _m, _i, _o, n=n: self.per.__setitem__(
                n, self.per[n] + time.perf_counter() - self._t0))

    def run_once(self) -> tuple[dict[str, float], float]:
        self.per = dict.fromkeys(self.per, 0.0)
        t0 = time.perf_counter()
        self.model(self.x)
        return {k: v * 1e3 for k, v in self.per.items()}, (time.perf_counter() - t0) * 1e3


def time_formats_in_context(model: nn.Module, x: torch.Tensor, layers: Sequence[Layer], keys: Sequence[str],
                            profile: HardwareProfile, calib: Sequence[Any], warmup: int, repeats: int,
                            rounds: int = ROUNDS) -> dict[str, dict[str, LatencyStat]]:
    """``{format key: {linear layer name: stat}}`` of ``model`` run on ``x`` at each uniform format."""
    import copy

    import mpsearch.quant as quant
    from mpsearch.core.plan import BitPlan, LayerBits
    from mpsearch.execution import IntegerConfig, to_integer
    from mpsearch.model import weight_ties

    names = [layer.name for layer in layers if layer.kind == "linear"]
    partners = {n for group in weight_ties(layers) if set(group) & set(names) for n in group}
    progs: dict[str, Any] = {}
    for key in keys:
        if key == "w16a16":
            progs[key] = _FloatProgram(copy.deepcopy(model).eval(), x, names)
            continue
        plan = BitPlan(layers={layer.name: LayerBits.parse(key) for layer in layers
                               if layer.name in names or layer.name in partners})
        q = quant.quantize(model, plan, calib, profile=profile)
        progs[key] = _Program(to_integer(q, (x,), IntegerConfig(integer_only=False)), x, names)
    samples: dict[str, list[tuple[dict[str, float], float]]] = {k: [] for k in progs}
    with torch.no_grad():
        for prog in progs.values():
            for _ in range(warmup):
                prog.run_once()
        for r, n_runs in enumerate(round_sizes(repeats, rounds)):
            for key in (list(progs) if r % 2 == 0 else list(progs)[::-1]):
                for _ in range(n_runs):
                    samples[key].append(progs[key].run_once())
    out: dict[str, dict[str, LatencyStat]] = {}
    for key, runs in samples.items():
        kept = keep_fastest([e2e for _, e2e in runs])
        out[key] = {n: stat_of([runs[i][0][n] for i in kept], 0.0) for n in names}
    return out
