"""Per-layer Hessian traces from curvature sites: exact where the graph allows, else sampled per example.

``tr(H_ll) = sum over sites m of tr(J_ml^T M_m J_ml)`` (see ``graph_sites.py``): only the
ops that curve (activations, LayerNorm, attention, products of activations, the loss) add to a
layer's Hessian block, each through the Jacobian ``J_ml`` of its input in the layer's weights.
Every site's ``M_m`` is block-diagonal over examples, so

    tr(J^T M J) = E_xi sum_n <G_n(M xi), G_n(xi)>,   xi Rademacher over the site's input,

where ``G_n(d)`` is example ``n``'s weight gradient for the output direction ``d``: one
batched first-order backward per site and round gives every layer's sample, and each sample
already averages over all examples (``per_example.py``). Where it is cheap the sum is exact:

* a softmax cross-entropy (or MSE) on ``(N, C)`` outputs with ``C <= exact_classes``: ``M =
  sum_c q_c q_c^T`` with ``q_c = sqrt(s p_c) (e_c - p)`` per example (``s``: 1/N for a mean),
  so ``C`` backward passes give ``sum_n ||G_n(q_c)||^2`` exactly - for a network that is
  piecewise linear in the layer (Linear / Conv / ReLU / max- and average-pooling / BatchNorm
  in eval / residual adds) this is the whole trace, with zero standard error;
* an elementwise site right after the layer (``s = W x`` into tanh, GELU, ...) of a
  non-sequence layer: the Rademacher sample is exact (``xi^2 = 1``).

Layers this cannot handle (a weight used twice or tied, a layer output without the examples
along dim 0, other layer types) are returned in ``fallback`` for Hutchinson probes; a graph it
cannot place at all (``Trace.blocker``) returns no traces.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from mpsearch.sensitivity.config import HessianConfig
from mpsearch.sensitivity.data import batch_loss
from mpsearch.sensitivity.graph_sites import ELEMENTWISE, OpTracer, Site, _bound, second_order_adjoint, softmax_ce_factor
from mpsearch.sensitivity.methods._base import Context
from mpsearch.sensitivity.per_example import inner_products, supports
from mpsearch.sensitivity.probes import probe_seed, rademacher

#: a cross-entropy / MSE site with at most this many outputs per example is summed exactly
EXACT_CLASSES = 64
#: probe pairs per batched backward: each vector carries every layer's output gradient (memory);
#: 2 measured 1.87x a training step on resnet_tiny (8: 2.5x), 1.4x faster than 1 on mlp16
CHUNK = 2


@dataclass
class SiteResult:
    """Traces of the layers the site method handled (by layer index), and why others were not."""

    mean: dict[int, float] = field(default_factory=dict)
    stderr: dict[int, float] = field(default_factory=dict)
    n_probes: dict[int, int] = field(default_factory=dict)
    converged: dict[int, bool] = field(default_factory=dict)
    fallback: dict[int, str] = field(default_factory=dict)
    blocker: str | None = None
    counters: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Batch:
    """One batch's retained graph: layer inputs and outputs, sites, and their output gradients."""

    weight: float
    n: int
    xs: dict[int, torch.Tensor]
    outs: dict[int, torch.Tensor]
    sites: list[Site]
    grads: list[torch.Tensor]


def _shared_weights(ctx: Context) -> set[int]:
    counts: dict[int, int] = {}
    for _, p in ctx.model.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
    return {i for i, c in counts.items() if c > 1}


def _eligible(ctx: Context) -> tuple[list[int], dict[int, str]]:
    """Layers the site method can handle, and the reason for each other one (one no-grad pass)."""
    shared = _shared_weights(ctx)
    calls: dict[int, list[torch.Tensor]] = {}
    hooks = [m.register_forward_hook((lambda i: lambda _m, _a, o: calls.setdefault(i, []).append(o))(i))
             for i, m in enumerate(ctx.modules)]
    try:
        with torch.no_grad():
            batch_loss(ctx.model, ctx.loss_fn, ctx.data.batches[0])
    finally:
        for h in hooks:
            h.remove()
    n = ctx.data.batches[0].n_examples
    why: dict[int, str] = {}
    for i, m in enumerate(ctx.modules):
        got = calls.get(i, [])
        if not supports(m):
            why[i] = f"{type(m).__name__} layers have no per-example rule"
        elif id(m.weight) in shared:
            why[i] = "its weight is tied to another module"
        elif len(got) != 1:
            why[i] = f"the module runs {len(got)} times per forward"
        elif not isinstance(got[0], torch.Tensor) or got[0].dim() == 0 or got[0].shape[0] % n:
            why[i] = "its output has no example dimension"
    return [i for i in range(len(ctx.modules)) if i not in why], why


class _Estimator:
    def __init__(self, ctx: Context, cfg: HessianConfig, layers: list[int]) -> None:
        self.ctx, self.cfg, self.layers = ctx, cfg, layers
        self.exact = {l: 0.0 for l in layers}
        self.samples: dict[int, list[float]] = {l: [] for l in layers}
        self.reached: set[int] = set()
        self.backward_vectors = {l: 0 for l in layers}
        self.batches: list[_Batch] = []
        self.sampled: list[tuple[int, int]] = []  # (batch, site) pairs left to sample
        self.diag: dict[tuple[int, int], torch.Tensor] = {}  # M = diag(c) of elementwise sites

    def build(self) -> str | None:
        """Forward every batch (graph kept) with the tracer; the exact parts; a blocker or None."""
        for b, (batch, weight) in enumerate(zip(self.ctx.data.batches, self.ctx.data.weights)):
            xs: dict[int, torch.Tensor] = {}
            outs: dict[int, torch.Tensor] = {}

            def hook(i: int):
                def fn(_m: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
                    xs[i], outs[i] = args[0].detach(), out
                return fn

            hooks = [self.ctx.modules[l].register_forward_hook(hook(l)) for l in self.layers]
            tracer = OpTracer(batch.n_examples, [self.ctx.modules[l].weight for l in self.layers])
            try:
                with tracer:
                    loss = batch_loss(self.ctx.model, self.ctx.loss_fn, batch)
            finally:
                for h in hooks:
                    h.remove()
            sites = tracer.trace.sites
            if tracer.trace.blocker:
                return tracer.trace.blocker
            if not sites or not sites[-1].is_loss or sites[-1].out is not loss:
                return "loss_fn is not a cross_entropy or mse_loss of the model's output"
            inner = [s.out for s in sites[:-1]]
            g = list(torch.autograd.grad(loss * weight, inner, retain_graph=True, allow_unused=True)) if inner else []
            g = [torch.zeros_like(o) if d is None else d for d, o in zip(g, inner)]
            g.append(torch.tensor(weight, dtype=loss.dtype, device=loss.device))
            self.batches.append(_Batch(weight, batch.n_examples, xs, outs, sites, g))
            for m, site in enumerate(sites):
                if not self._exact_loss(self.batches[-1], site):
                    self.sampled.append((b, m))
        return None

    def _backward(self, bt: _Batch, inputs: list[torch.Tensor], vecs: list[torch.Tensor],
                  layers: list[int]) -> dict[int, torch.Tensor]:
        """Output gradients ``(k, *shape)`` of ``layers`` for ``k`` stacked vectors at ``inputs``."""
        live = [l for l in layers if l in bt.outs]
        got = torch.autograd.grad(inputs, [bt.outs[l] for l in live], vecs, retain_graph=True,
                                  is_grads_batched=True, allow_unused=True)
        return {l: d for l, d in zip(live, got) if d is not None}

    def _exact_loss(self, bt: _Batch, site: Site) -> bool:
        """Sum a small-output loss site exactly over its classes; False where it must be sampled."""
        z = site.inputs[0] if site.is_loss else None
        if z is None or z.shape[0] != bt.n or z[0].numel() > EXACT_CLASSES:
            return False
        factor = softmax_ce_factor(site)
        if factor is not None:
            p, scale = factor
            eye = torch.eye(p.shape[1], dtype=p.dtype, device=p.device)
            q = (scale * bt.weight * p.t()).sqrt().unsqueeze(2) * (eye.unsqueeze(1) - p.unsqueeze(0))  # (C, N, C)
        else:  # mse_loss: M = 2 s I
            red = _bound(site.func, site.args, site.kwargs).get("reduction", "mean")
            scale = 2.0 * bt.weight / (z.numel() if red == "mean" else 1.0)
            c = z[0].numel()
            q = torch.eye(c, dtype=torch.float64, device=z.device).mul(math.sqrt(scale))
            q = q.unsqueeze(1).expand(c, z.shape[0], c).reshape(c, *z.shape)
        step = 2 * CHUNK
        for c0 in range(0, q.shape[0], step):
            chunk = q[c0:c0 + step].to(z.dtype)
            for l, d in self._backward(bt, [z], [chunk], self.layers).items():
                self.exact[l] += float(inner_products(self.ctx.modules[l], bt.xs[l], d, None, bt.n).sum())
                self.backward_vectors[l] += chunk.shape[0]
        return True

    def sample_round(self, active: list[int], ids: list[int]) -> None:
        """``len(ids)`` samples of every active layer's trace (exact part + every sampled site).

        Each site's probe pairs go through the backward ``CHUNK`` at a time (a batched backward
        holds every layer's output gradient for each vector it carries: memory).
        """
        k = len(ids)
        got = {l: torch.full((k,), self.exact[l], dtype=torch.float64) for l in active}
        for b, m in self.sampled:
            bt = self.batches[b]
            site = bt.sites[m]
            xi = [torch.stack([rademacher(t.shape, probe_seed(self.cfg.seed, i, b, m, j), t.device, t.dtype)
                               for i in ids]) for j, t in enumerate(site.inputs)]
            if site.name in ELEMENTWISE:  # M = diag(c): the balanced pair (sign(c) |c|^1/2 xi, |c|^1/2 xi)
                c = self.diag.get((b, m))
                if c is None:
                    c = self.diag[(b, m)] = second_order_adjoint(site, bt.grads[m], [torch.ones_like(xi[0][:1])])[0][0]
                root = c.abs().sqrt()
                pairs = [(xi[0] * (root * c.sign()), xi[0] * root)]
            else:
                pairs = list(zip(second_order_adjoint(site, bt.grads[m], xi), xi))
            for j0 in range(0, k, CHUNK):
                j1 = min(j0 + CHUNK, k)
                vecs = [torch.cat([a[j0:j1], x[j0:j1]]) for a, x in pairs]
                for l, d in self._backward(bt, site.inputs, vecs, active).items():
                    got[l][j0:j1] += inner_products(self.ctx.modules[l], bt.xs[l], d[:j1 - j0], d[j1 - j0:], bt.n).cpu()
                    self.reached.add(l)
                    self.backward_vectors[l] += 2 * (j1 - j0)
        for l in active:
            self.samples[l].extend(got[l].tolist())


def _stats(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else math.inf
    return mean, math.sqrt(var / n)


def site_traces(ctx: Context, cfg: HessianConfig) -> SiteResult:
    """Traces of every layer the site method handles (see the module docstring).

    Only the analysed weights that the method handles require grad while it runs (so that
    "depends on a layer" is ``requires_grad``); every flag is restored afterwards.
    """
    t0 = time.perf_counter()
    res = SiteResult()
    layers, res.fallback = _eligible(ctx)
    if not layers:
        return res
    keep = {id(ctx.modules[l].weight) for l in layers}
    params = list({id(p): p for p in ctx.model.parameters()}.values())
    flags = [(p, p.requires_grad) for p in params]
    est = _Estimator(ctx, cfg, layers)
    try:
        for p in params:
            p.requires_grad_(id(p) in keep)
        res.blocker = est.build()
        if res.blocker:
            return res
        active = [] if not est.sampled else list(layers)
        next_id = 0
        while active:
            ids = list(range(next_id, next_id + cfg.probes_per_batch))
            next_id += len(ids)
            est.sample_round(active, ids)
            still = []
            for l in active:
                if l not in est.reached:
                    continue  # no sampled site reaches it: its trace is exact
                mean, se = _stats(est.samples[l])
                n = len(est.samples[l])
                if n < max(cfg.min_probes, 2) or (se > cfg.rel_stderr_target * abs(mean) and n < cfg.max_probes):
                    still.append(l)
            active = still
            if cfg.progress is not None:
                cfg.progress({"stage": "trace", "round": next_id // cfg.probes_per_batch, "n_probes": next_id,
                              "active_layers": len(active), "n_layers": len(ctx.names)})
    finally:
        est.batches.clear()
        for p, flag in flags:
            p.requires_grad_(flag)
    for l in layers:
        if l in est.reached:
            mean, se = _stats(est.samples[l])
        else:
            mean, se = est.exact[l], 0.0
        res.mean[l], res.stderr[l], res.n_probes[l] = mean, se, est.backward_vectors[l]
        res.converged[l] = se <= cfg.rel_stderr_target * abs(mean) or se == 0.0
    res.counters = {"seconds": time.perf_counter() - t0, "sampled_sites": len(est.sampled),
                    "samples": max((len(v) for v in est.samples.values()), default=0)}
    return res
