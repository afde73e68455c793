"""Top Hessian eigenvalue of every layer's weight block by power iteration (HAWQ-V1)."""

from __future__ import annotations

import time

import torch

from mpsearch.core.types import LayerSensitivity, Sensitivity
from mpsearch.sensitivity.config import EigenConfig
from mpsearch.sensitivity.data import batch_loss
from mpsearch.sensitivity.double_backward import find_custom_ops, unsupported_error
from mpsearch.sensitivity.methods._base import Context, Method
from mpsearch.sensitivity.probes import probe_seed, rademacher


class EigenMethod(Method):
    """Power iteration on each block ``H_ll`` (restricted HVPs on a shared forward pass).

    Power iteration finds the eigenvalue of largest magnitude; for the loss Hessians of
    trained networks that is the top (positive) one. All layers iterate together, one data
    pass per iteration; a layer stops when its Rayleigh quotient changes by less than
    ``rel_tol`` (relative).
    """

    name = "eigen"
    config_cls = EigenConfig

    def run(self, ctx: Context, config: EigenConfig) -> Sensitivity:
        t0 = time.perf_counter()
        strict = bool(find_custom_ops(ctx.model, ctx.loss_fn, ctx.data))  # see rounds.probe_round
        weights = [m.weight for m in ctx.modules]
        n = len(weights)
        v = []
        for l, w in enumerate(weights):
            r = rademacher(w.shape, probe_seed(config.seed, 0, l), w.device, w.dtype)
            v.append(r / r.norm())
        lam: list[float | None] = [None] * n
        iters = [0] * n
        done = [False] * n
        for it in range(config.max_iters):
            active = [l for l in range(n) if not done[l]]
            if not active:
                break
            hv = self._hvps(ctx, weights, v, active, strict)
            for l in active:
                iters[l] = it + 1
                lam[l], v[l], done[l] = _power_step(v[l], hv[l], lam[l], config.rel_tol)
            if config.progress is not None:
                config.progress({"stage": "eigen", "round": it + 1, "active_layers": done.count(False), "n_layers": n})
        layers = {name: LayerSensitivity(eigenvalue=lam[l], n_params=weights[l].numel())
                  for l, name in enumerate(ctx.names)}
        meta = {"max_iters": config.max_iters, "rel_tol": config.rel_tol, "seed": config.seed,
                "iterations": dict(zip(ctx.names, iters)), "converged": dict(zip(ctx.names, done)),
                "n_examples": ctx.data.n_examples, "batch_weighting": "examples (n_b / N)",
                "seconds": time.perf_counter() - t0}
        return Sensitivity(layers=layers, method=self.name, meta=meta)

    def _hvps(self, ctx: Context, weights: list[torch.Tensor], v: list[torch.Tensor], active: list[int],
              strict: bool) -> dict[int, torch.Tensor]:
        """``H_ll v_l`` of the data set's mean loss for each active layer (batches weighted ``n_b / N``)."""
        hv = {l: torch.zeros_like(weights[l]) for l in active}
        try:
            for w_b, batch in zip(ctx.data.weights, ctx.data.batches):
                loss = batch_loss(ctx.model, ctx.loss_fn, batch)
                grads = torch.autograd.grad(loss, [weights[l] for l in active], create_graph=True, allow_unused=True)
                for l, g in zip(active, grads):
                    h = _block_hvp(g, weights[l], v[l], ctx.names[l], strict)
                    if h is not None:
                        hv[l] += w_b * h
        except (RuntimeError, NotImplementedError) as exc:
            raise unsupported_error(ctx.model, ctx.loss_fn, ctx.data, self.name, str(exc)) from exc
        return hv


def _block_hvp(g: torch.Tensor | None, w: torch.Tensor, v: torch.Tensor, name: str, strict: bool
               ) -> torch.Tensor | None:
    """``H_ll v`` of one batch from the layer's gradient ``g``; None where the block is zero."""
    if g is None or not g.requires_grad:
        if strict and g is not None:
            raise RuntimeError(f"the gradient of {name!r} has no autograd graph")
        return None  # loss at most linear in this layer: zero block
    h = torch.autograd.grad(g, w, v, retain_graph=True, allow_unused=True)[0]
    if h is None and strict:
        raise RuntimeError(f"the gradient's graph does not reach the weight of {name!r}")
    return h


def _power_step(v: torch.Tensor, hv: torch.Tensor, previous: float | None, rel_tol: float
                ) -> tuple[float, torch.Tensor, bool]:
    """One power-iteration step: ``(Rayleigh quotient, next v, converged)``."""
    new = float((v * hv).sum(dtype=torch.float64))  # Rayleigh quotient, ||v|| = 1
    norm = hv.norm()
    if float(norm) == 0.0:
        return 0.0, v, True
    return new, hv / norm, previous is not None and abs(new - previous) <= rel_tol * abs(new)
