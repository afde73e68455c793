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
from typing import Any, Protocol, Sequence

import torch

from mpsearch.sensitivity.config import HessianConfig
from mpsearch.sensitivity.control import NystromControl
from mpsearch.sensitivity.data import Data
from mpsearch.sensitivity.distributed import Comm
from mpsearch.sensitivity.probes import SampleStats, converged, floors


class Target(Protocol):
    """What a Hessian is taken with respect to (layer weights, or layer inputs)."""

    n_elements: Sequence[int]  # elements each layer's trace covers

    def forward(self, batch_index: int, layer_ids: Sequence[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run batch ``batch_index``; return its mean loss and the tensor of each layer."""

    def probe(self, probe_index: int, layer_index: int, batch_index: int, like: torch.Tensor) -> torch.Tensor:
        """The Rademacher probe of (probe, layer[, batch]) shaped like ``like``."""

    def new_round(self) -> None:
        """Forget probes cached for the previous round."""


class DoubleBackwardFailure(RuntimeError):
    """The second-order backward failed; ``analyze`` turns it into UnsupportedModelError."""

    def __init__(self, message: str, layer: str | None = None):
        super().__init__(message)
        self.layer = layer


def probe_round(target: Target, data: Data, groups: Sequence[Sequence[int]], probe_ids: Sequence[int],
                n_layers: int, vmap: bool, comm: Comm, layer_names: Sequence[str],
                no_graph_is_zero: bool = True, collect: Sequence[int] = ()
                ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Samples ``v_l^T (H v)_l`` of one round: a ``(len(probe_ids), n_layers)`` float64 tensor.

    Each group gets one HVP per probe, with the probes of the group's layers stacked. A
    layer whose gradient does not reach the loss (unused) or carries no autograd graph
    (the loss is at most linear in it) has a zero block and zero samples - unless
    ``no_graph_is_zero`` is False (the model has custom autograd Functions, whose backward
    may simply not be differentiable), then a missing graph raises.

    For the layers in ``collect`` it also returns the data-set HVPs ``(H v)_l`` of the
    round's probes, a ``(len(probe_ids), n_l)`` tensor each (for the control variate).
    """
    samples = torch.zeros(len(probe_ids), n_layers, dtype=torch.float64)
    mine = [j for j, i in enumerate(probe_ids) if comm.mine(i)]
    active = sorted({l for g in groups for l in g})
    target.new_round()
    hvp_sum: dict[int, torch.Tensor] = {}  # collected layer -> (len(mine), *shape) sum_b w_b (H_b v)_l
    acc: dict[int, torch.Tensor] = {}  # layer -> (len(mine),) float64 on the model's device; no host sync per probe
    if mine and active:
        for b, weight in enumerate(data.weights):
            loss, tensors = target.forward(b, active)
            xs = [tensors[l] for l in active]
            try:
                grads = torch.autograd.grad(loss, xs, create_graph=True, allow_unused=True)
            except RuntimeError as exc:  # e.g. an op whose first backward needs a missing input
                raise DoubleBackwardFailure(str(exc)) from exc
            g = dict(zip(active, grads))
            for group in groups:
                dead = [l for l in group if g[l] is None or not g[l].requires_grad]
                if dead and not no_graph_is_zero and any(g[l] is not None for l in dead):
                    raise DoubleBackwardFailure("the gradient has no autograd graph", layer_names[dead[0]])
                group = [l for l in group if l not in dead]
                if not group:
                    continue
                outs = [g[l] for l in group]
                ins = [tensors[l] for l in group]
                vecs = {l: torch.stack([target.probe(probe_ids[j], l, b, tensors[l]) for j in mine]) for l in group}
                for l in group:
                    if l not in acc:
                        acc[l] = torch.zeros(len(mine), dtype=torch.float64, device=tensors[l].device)
                batched = None
                if vmap:
                    try:
                        batched = torch.autograd.grad(outs, ins, grad_outputs=[vecs[l] for l in group],
                                                      retain_graph=True, is_grads_batched=True, allow_unused=True)
                    except (RuntimeError, NotImplementedError):
                        batched = None  # no batching rule for some op: the loop below (which may raise)
                if batched is not None and not no_graph_is_zero and any(hv is None for hv in batched):
                    batched = None  # let the loop below name the failure
                try:
                    if batched is not None:
                        for l, hv in zip(group, batched):
                            if hv is not None:
                                acc[l] += weight * (vecs[l] * hv).flatten(1).sum(1, dtype=torch.float64)
                                if l in collect:
                                    hvp_sum[l] = hvp_sum.get(l, 0) + weight * hv.detach()
                    else:
                        for jj in range(len(mine)):
                            hvs = torch.autograd.grad(outs, ins, grad_outputs=[vecs[l][jj] for l in group],
                                                      retain_graph=True, allow_unused=True)
                            for l, hv in zip(group, hvs):
                                if hv is None and not no_graph_is_zero:
                                    # the path from W_l to its gradient is cut: a once-differentiable
                                    # custom backward ran without building a graph
                                    raise DoubleBackwardFailure("the gradient's graph does not reach the weight",
                                                                layer_names[l])
                                if hv is not None:
                                    acc[l][jj] += weight * (vecs[l][jj] * hv).sum(dtype=torch.float64)
                                    if l in collect:
                                        if l not in hvp_sum:
                                            hvp_sum[l] = torch.zeros_like(vecs[l])
                                        hvp_sum[l][jj] += weight * hv.detach()
                except (RuntimeError, NotImplementedError) as exc:
                    raise DoubleBackwardFailure(str(exc)) from exc
            del loss, grads, g, tensors, xs
    for l, a in acc.items():
        samples[mine, l] = a.cpu()
    collected = {}
    for l in collect:
        w = target.weights[l]  # type: ignore[attr-defined]  # only weight targets collect
        full = torch.zeros((len(probe_ids), *w.shape), dtype=w.dtype, device=w.device)
        if l in hvp_sum:
            full[mine] = hvp_sum[l].to(w.dtype)
        collected[l] = comm.sum_(full).flatten(1)
    return comm.sum_(samples), collected


def estimate_traces(target: Target, data: Data, cfg: HessianConfig, comm: Comm, layer_names: Sequence[str],
                    stage: str = "trace", no_graph_is_zero: bool = True) -> tuple[list[SampleStats], list[bool], dict[str, Any]]:
    """Run rounds of probes until every layer meets the stopping rule or the cap.

    Returns per-layer sample statistics, per-layer convergence flags, and counters
    (``hvp_calls``: backward passes of second order, ``rounds``, ``seconds``).
    """
    n = len(layer_names)
    stats = [SampleStats() for _ in range(n)]
    done = [False] * n
    ok = [False] * n
    t0 = time.perf_counter()
    counters = {"rounds": 0, "hvp_calls": 0}

    def settle(ids: Sequence[int]) -> None:
        fl = floors(stats, target.n_elements, cfg.floor_rel)
        for l in ids:
            ok[l] = converged(stats[l], cfg.rel_stderr_target, fl[l], cfg.min_probes)
            done[l] = ok[l] or stats[l].n >= cfg.max_probes

    def report(n_probes: int) -> None:
        if cfg.progress is not None:
            cfg.progress({"stage": stage, "round": counters["rounds"], "n_probes": n_probes,
                          "active_layers": done.count(False), "n_layers": n})

    control_on = cfg.control_rank > 0 and hasattr(target, "weights")
    ctrl: list[NystromControl | None] = [None] * n
    use_cv = [True] * n
    # With the control on, the first round of a layer is a pilot: its HVPs build the control
    # and its raw samples are held back (mixing them with the far less spread corrected ones
    # would inflate the standard error); they join the estimate only if the layer falls
    # back to raw samples.
    pilot: list[list[float]] = [[] for _ in range(n)]

    def absorb(layers: Sequence[int], ids: Sequence[int], s: torch.Tensor, got: dict[int, torch.Tensor]) -> None:
        """Add a round's samples (corrected where a control exists); build controls from ``got``."""
        for l in layers:
            raw = s[:, l]
            c = ctrl[l]
            if l in got:
                like = target.weights[l]  # type: ignore[attr-defined]
                m = min(cfg.control_rank, len(ids))
                vs = torch.stack([target.probe(i, l, 0, like) for i in ids[:m]])
                ctrl[l] = NystromControl(vs, got[l][:m])
                pilot[l] = raw.tolist()
            elif c is not None:
                like = target.weights[l]  # type: ignore[attr-defined]
                vs = torch.stack([target.probe(i, l, 0, like) for i in ids])
                corrected = raw + c.correction(vs)
                if use_cv[l]:
                    stats[l].add(corrected.tolist())
                else:
                    stats[l].add(raw.tolist() + pilot[l])
                    pilot[l] = []
                if len(ids) > 1:  # decides the next round only, from this one
                    use_cv[l] = bool(corrected.var() <= raw.var())
            else:
                stats[l].add(raw.tolist())

    if cfg.strategy == "per_layer":
        for l in range(n):
            next_id = 0
            while not done[l]:
                k = min(cfg.probes_per_batch, cfg.max_probes - stats[l].n)
                ids = list(range(next_id, next_id + k))
                next_id += k
                collect = [l] if control_on and ctrl[l] is None else []
                s, got = probe_round(target, data, [[l]], ids, n, cfg.vmap_probes, comm, layer_names,
                                     no_graph_is_zero, collect)
                absorb([l], ids, s, got)
                counters["rounds"] += 1
                counters["hvp_calls"] += k * len(data)
                settle([l])
                report(next_id)
    else:
        next_id = 0
        while not all(done):
            active = [l for l in range(n) if not done[l]]
            k = min(cfg.probes_per_batch, min(cfg.max_probes - stats[l].n for l in active))
            ids = list(range(next_id, next_id + k))
            next_id += k
            if cfg.strategy == "shared":
                groups = [active if cfg.drop_converged else list(range(n))]
            else:
                groups = [[l] for l in active]
            collect = [l for l in active if control_on and ctrl[l] is None]
            s, got = probe_round(target, data, groups, ids, n, cfg.vmap_probes, comm, layer_names,
                                 no_graph_is_zero, collect)
            absorb(active, ids, s, got)
            counters["rounds"] += 1
            counters["hvp_calls"] += k * len(data) * len(groups)
            settle(active)
            report(next_id)
    counters["seconds"] = time.perf_counter() - t0
    return stats, ok, counters
