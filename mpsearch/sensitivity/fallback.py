"""Fisher where the Hessian cannot be had: layers whose second derivative needs a double backward
that some op does not have (a custom ``autograd.Function`` marked once-differentiable).

Each layer is tried alone, with one Hessian-vector product on the first batch; the layers that
fail get the empirical Fisher trace (``LayerSensitivity.fisher``), which omega uses when a
layer has no Hessian trace. The Fisher is the Gauss-Newton part of the Hessian for the
cross-entropy at a trained optimum, so the two are on one scale there (HAWQ-V2's argument for
traces; Fisher-based mixed precision uses the same scale).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from mpsearch.core.types import Sensitivity
from mpsearch.sensitivity.config import FisherConfig
from mpsearch.sensitivity.data import batch_loss
from mpsearch.sensitivity.double_backward import find_custom_ops
from mpsearch.sensitivity.methods._base import Context

log = logging.getLogger("mpsearch")


def layers_without_double_backward(ctx: Context) -> dict[str, str]:
    """Layer name -> why its Hessian-vector product failed, for every layer where it fails.

    One forward/backward per layer on the first batch (the probe is all ones: the question is
    whether the graph can be differentiated twice, not the value).
    """
    failed: dict[str, str] = {}
    batch = ctx.data.batches[0]
    # With a custom op in the graph, a second derivative that does not reach the weight means
    # the op cut it (once_differentiable), not a zero Hessian block (Hutchinson's strict rule).
    custom = bool(find_custom_ops(ctx.model, ctx.loss_fn, ctx.data))
    for name, module in zip(ctx.names, ctx.modules):
        w = module.weight
        try:
            (g,) = torch.autograd.grad(batch_loss(ctx.model, ctx.loss_fn, batch), w, create_graph=True)
            if g.grad_fn is None:  # the gradient was built without a graph: no second derivative
                raise RuntimeError("the gradient has no autograd graph")
            (hv,) = torch.autograd.grad((g * torch.ones_like(g)).sum(), w, allow_unused=True)
            if hv is None and custom:
                raise RuntimeError("the gradient's graph does not reach the weight")
        except (RuntimeError, NotImplementedError) as exc:
            failed[name] = (str(exc).strip().splitlines() or ["no detail"])[0]
    return failed


def sub_context(ctx: Context, names: list[str]) -> Context:
    """``ctx`` restricted to the layers ``names`` (in ``ctx``'s order)."""
    keep = [i for i, n in enumerate(ctx.names) if n in set(names)]
    return replace(ctx, names=[ctx.names[i] for i in keep], modules=[ctx.modules[i] for i in keep])


def with_fisher(ctx: Context, hessian: Sensitivity | None, failed: dict[str, str]) -> Sensitivity:
    """Merge ``hessian`` (the layers that have one) with the Fisher trace of the ``failed`` layers,
    in ``ctx``'s layer order; one WARNING line says which layers and why."""
    from mpsearch.sensitivity.methods.fisher import FisherMethod

    fisher = FisherMethod().run(sub_context(ctx, list(failed)), FisherConfig())
    ops = sorted({f"{op} in module {m!r}" for m, op in find_custom_ops(ctx.model, ctx.loss_fn, ctx.data)})
    why = ", ".join(ops) if ops else next(iter(failed.values()))
    log.warning("analyze: method='hessian' uses the empirical Fisher trace for %d layer(s) whose second "
                "derivative needs a double backward that does not exist (%s): %s", len(failed), why,
                ", ".join(failed))
    layers = {n: (fisher.layers[n] if n in failed else hessian.layers[n]) for n in ctx.names}  # type: ignore[union-attr]
    meta = dict(hessian.meta) if hessian is not None else {}
    meta["fisher_layers"] = dict(failed)
    return Sensitivity(layers=layers, method="hessian", meta=meta)
