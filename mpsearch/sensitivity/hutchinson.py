"""Hutchinson estimates of per-layer Hessian traces, with adaptive per-layer stopping.

A *sample* of layer ``l`` is ``v_l^T (H v)_l`` for one Rademacher probe ``v`` used across
every batch of the data, where ``H`` is the Hessian of the data set's mean loss
(``sum_b (n_b/N) H_b``, see ``data.py``). Samples of one layer are therefore independent
and identically distributed estimates of ``tr(H_ll)`` and their standard error is honest.
(Drawing a new probe per batch and treating each batch's value as a sample would mix the
batch-to-batch spread of ``H_b`` into the error and over-weight a small last batch.)

Strategies (``HessianConfig.strategy``):

* ``shared``: one HVP per probe over every still-active layer. ``(H v)_l = H_ll v_l +
  sum_m H_lm v_m``; the cross terms have mean zero (independent probes) but add variance,
  so layers may need more probes; a layer that converges drops out (its ``v_l`` is zeroed),
  which removes its cross terms from the others.
* ``blockwise``: per probe, one restricted HVP per active layer (``grad(g_l, W_l, v_l)``)
  on a shared forward/backward: no cross terms, L backward passes per probe.
* ``per_layer``: the HAWQ/PyHessian loop - layer after layer, each probe round with its
  own forward and first-order backward restricted to that layer. Kept as the baseline.

A round evaluates ``probes_per_batch`` probes on one forward/backward per batch (the graph
of the gradient is kept and reused); with ``vmap_probes`` the round's HVPs are one vmapped
backward.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from mpsearch.sensitivity.config import HessianConfig
from mpsearch.sensitivity.control import NystromControl
from mpsearch.sensitivity.probes import SampleStats, converged, floors
from mpsearch.sensitivity.rounds import ProbeSetup, probe_round


class _Traces:
    """The per-layer state of one estimate: samples, stopping flags, control variates, counters."""

    def __init__(self, setup: ProbeSetup, cfg: HessianConfig, stage: str) -> None:
        n = setup.n_layers
        self.setup, self.cfg, self.stage = setup, cfg, stage
        self.stats = [SampleStats() for _ in range(n)]
        self.done = [False] * n
        self.ok = [False] * n
        self.counters: dict[str, Any] = {"rounds": 0, "hvp_calls": 0}
        self.control_on = cfg.control_rank > 0 and hasattr(setup.target, "weights")
        self.ctrl: list[NystromControl | None] = [None] * n
        self.use_cv = [True] * n
        # With the control on, the first round of a layer is a pilot: its HVPs build the control
        # and its raw samples are held back (mixing them with the far less spread corrected ones
        # would inflate the standard error); they join the estimate only if the layer falls
        # back to raw samples.
        self.pilot: list[list[float]] = [[] for _ in range(n)]

    def run_round(self, layers: Sequence[int], groups: Sequence[Sequence[int]], ids: list[int]) -> None:
        """Evaluate probes ``ids`` on ``groups``, add the samples of ``layers``, update their stopping."""
        collect = [l for l in layers if self.control_on and self.ctrl[l] is None]
        s, got = probe_round(self.setup, groups, ids, collect)
        self._absorb(layers, ids, s, got)
        self.counters["rounds"] += 1
        self.counters["hvp_calls"] += len(ids) * len(self.setup.data) * len(groups)
        self._settle(layers)
        self._report(ids[-1] + 1)

    def _absorb(self, layers: Sequence[int], ids: Sequence[int], s: torch.Tensor, got: dict[int, torch.Tensor]) -> None:
        """Add a round's samples (corrected where a control exists); build controls from ``got``."""
        for l in layers:
            raw = s[:, l]
            if l in got:
                self._start_control(l, ids, raw, got[l])
            elif self.ctrl[l] is not None:
                self._add_corrected(l, ids, raw)
            else:
                self.stats[l].add(raw.tolist())

    def _start_control(self, l: int, ids: Sequence[int], raw: torch.Tensor, hvps: torch.Tensor) -> None:
        like = self.setup.target.weights[l]  # type: ignore[attr-defined]
        m = min(self.cfg.control_rank, len(ids))
        vs = torch.stack([self.setup.target.probe(i, l, 0, like) for i in ids[:m]])
        self.ctrl[l] = NystromControl(vs, hvps[:m])
        self.pilot[l] = raw.tolist()

    def _add_corrected(self, l: int, ids: Sequence[int], raw: torch.Tensor) -> None:
        like = self.setup.target.weights[l]  # type: ignore[attr-defined]
        vs = torch.stack([self.setup.target.probe(i, l, 0, like) for i in ids])
        corrected = raw + self.ctrl[l].correction(vs)  # type: ignore[union-attr]
        if self.use_cv[l]:
            self.stats[l].add(corrected.tolist())
        else:
            self.stats[l].add(raw.tolist() + self.pilot[l])
            self.pilot[l] = []
        if len(ids) > 1:  # decides the next round only, from this one
            self.use_cv[l] = bool(corrected.var() <= raw.var())

    def _settle(self, ids: Sequence[int]) -> None:
        cfg = self.cfg
        fl = floors(self.stats, self.setup.target.n_elements, cfg.floor_rel)
        for l in ids:
            self.ok[l] = converged(self.stats[l], cfg.rel_stderr_target, fl[l], cfg.min_probes)
            self.done[l] = self.ok[l] or self.stats[l].n >= cfg.max_probes

    def _report(self, n_probes: int) -> None:
        if self.cfg.progress is not None:
            self.cfg.progress({"stage": self.stage, "round": self.counters["rounds"], "n_probes": n_probes,
                               "active_layers": self.done.count(False), "n_layers": self.setup.n_layers})


def estimate_traces(setup: ProbeSetup, cfg: HessianConfig, stage: str = "trace"
                    ) -> tuple[list[SampleStats], list[bool], dict[str, Any]]:
    """Run rounds of probes until every layer meets the stopping rule or the cap.

    Args:
        setup: target, data, ranks and layer names (see :class:`ProbeSetup`).
        cfg: strategy, probes per round, stopping rule, control variate.
        stage: the ``stage`` of progress events.

    Returns:
        Per-layer sample statistics, per-layer convergence flags, and counters
        (``hvp_calls``: backward passes of second order, ``rounds``, ``seconds``).
    """
    t0 = time.perf_counter()
    est = _Traces(setup, cfg, stage)
    n = setup.n_layers
    if cfg.strategy == "per_layer":
        for l in range(n):
            next_id = 0
            while not est.done[l]:
                k = min(cfg.probes_per_batch, cfg.max_probes - est.stats[l].n)
                est.run_round([l], [[l]], list(range(next_id, next_id + k)))
                next_id += k
    else:
        next_id = 0
        while not all(est.done):
            active = [l for l in range(n) if not est.done[l]]
            k = min(cfg.probes_per_batch, min(cfg.max_probes - est.stats[l].n for l in active))
            if cfg.strategy == "shared":
                groups = [active if cfg.drop_converged else list(range(n))]
            else:
                groups = [[l] for l in active]
            est.run_round(active, groups, list(range(next_id, next_id + k)))
            next_id += k
    est.counters["seconds"] = time.perf_counter() - t0
    return est.stats, est.ok, est.counters
