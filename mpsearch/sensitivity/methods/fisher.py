"""Empirical Fisher trace per layer: mean squared per-example gradient (first order only)."""

from __future__ import annotations

import time
from typing import Any

import torch

from mpsearch.core.types import LayerSensitivity, Sensitivity
from mpsearch.sensitivity.config import FisherConfig
from mpsearch.sensitivity.data import Batch, batch_loss
from mpsearch.sensitivity.methods._base import Context, Method


def _slice(obj: Any, i: int) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj[i:i + 1]
    if isinstance(obj, (tuple, list)):
        return type(obj)(_slice(o, i) for o in obj)
    return obj


class FisherMethod(Method):
    """``fisher_l = (1/N) sum_i ||d loss_i / d W_l||^2`` - the trace of the empirical Fisher.

    Needs no double backward, so it works for ops without second derivatives. Per-example
    gradients come from ``torch.func`` (vmap of grad); where the model or loss cannot be
    vmapped (data-dependent control flow, some custom ops) a loop over single examples gives
    the same numbers, slower.
    """

    name = "fisher"
    config_cls = FisherConfig

    def run(self, ctx: Context, config: FisherConfig) -> Sensitivity:
        t0 = time.perf_counter()
        weights = [m.weight for m in ctx.modules]
        sq = [torch.zeros((), dtype=torch.float64, device=w.device) for w in weights]  # sum of squared grads
        how = config.granularity
        for b, batch in enumerate(ctx.data.batches):
            if config.granularity == "per_batch":
                grads = torch.autograd.grad(batch_loss(ctx.model, ctx.loss_fn, batch), weights, allow_unused=True)
                for l, g in enumerate(grads):
                    if g is not None:
                        # n_b ||g_b||^2 estimates the mean squared per-example gradient (when the
                        # mean gradient is small); weighted by n_b and divided by N below
                        sq[l] += batch.n_examples ** 2 * g.double().pow(2).sum()
            else:
                per = self._vmapped(ctx, batch, weights) if how != "per_sample_loop" else None
                if per is None:
                    how = "per_sample_loop"
                    per = self._looped(ctx, batch, weights)
                for l, s in enumerate(per):
                    sq[l] += s
            if config.progress is not None:
                config.progress({"stage": "fisher", "batch": b + 1, "n_batches": len(ctx.data)})
        n = ctx.data.n_examples
        layers = {name: LayerSensitivity(fisher=float(sq[l].detach()) / n, n_params=weights[l].numel())
                  for l, name in enumerate(ctx.names)}
        meta = {"granularity": config.granularity, "computed_by": how, "n_examples": n,
                "seconds": time.perf_counter() - t0}
        return Sensitivity(layers=layers, method=self.name, meta=meta)

    @staticmethod
    def _vmapped(ctx: Context, batch: Batch, weights: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """Sum over the batch of squared per-example gradients, or None if vmap fails."""
        from torch.func import functional_call, grad, vmap

        if not isinstance(batch.inputs, torch.Tensor) or not isinstance(batch.targets, torch.Tensor):
            return None
        names = {id(p): n for n, p in ctx.model.named_parameters()}
        keys = [names[id(w)] for w in weights]
        params = {k: w.detach() for k, w in zip(keys, weights)}

        def one(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            out = functional_call(ctx.model, p, (x.unsqueeze(0),), strict=False)
            return ctx.loss_fn(out, y.unsqueeze(0))

        try:
            g = vmap(grad(one), in_dims=(None, 0, 0))(params, batch.inputs, batch.targets)
        except Exception:  # noqa: BLE001 - any vmap limitation: fall back to the loop
            return None
        return [g[k].double().pow(2).sum() for k in keys]

    @staticmethod
    def _looped(ctx: Context, batch: Batch, weights: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [torch.zeros((), dtype=torch.float64, device=w.device) for w in weights]
        for i in range(batch.n_examples):
            one = Batch(_slice(batch.inputs, i), _slice(batch.targets, i), 1)
            grads = torch.autograd.grad(batch_loss(ctx.model, ctx.loss_fn, one), weights, allow_unused=True)
            for l, g in enumerate(grads):
                if g is not None:
                    out[l] += g.double().pow(2).sum()
        return out
