"""One round of Hutchinson probes: samples ``v_l^T (H v)_l`` for a set of probes and layer groups.

A round runs one forward and one first-order backward (with its graph kept) per data batch,
then, for each group of layers, the Hessian-vector products of the round's probes: one
vmapped backward (``is_grads_batched``) when :attr:`ProbeSetup.vmap` is on and every op has
a batching rule, else a loop of backward calls, one per probe. The probes are drawn in a
fixed order (group by group, layer by layer, probe by probe), so the samples do not depend
on which path ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

from mpsearch.sensitivity.data import Data
from mpsearch.sensitivity.distributed import Comm


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


@dataclass(frozen=True)
class ProbeSetup:
    """What stays the same over every round of one estimate.

    Attributes:
        target: the tensors the Hessian is taken with respect to.
        data: the batches and their weights ``n_b / N``.
        comm: which probes this rank evaluates, and the sum over ranks.
        layer_names: one per layer index (named in errors).
        vmap: evaluate a group's probes with one vmapped backward where possible.
        no_graph_is_zero: a layer whose gradient carries no autograd graph (the loss is at
            most linear in it) has zero samples; False when the model has custom autograd
            Functions, whose backward may simply not be differentiable: then it raises.
    """

    target: Target
    data: Data
    comm: Comm
    layer_names: Sequence[str]
    vmap: bool = True
    no_graph_is_zero: bool = True

    @property
    def n_layers(self) -> int:
        """Number of layers (columns of a round's samples)."""
        return len(self.layer_names)


class _RoundSums:
    """This rank's running sums over the batches of one round, kept on the model's device.

    ``acc[l]``: ``(len(mine),)`` float64 sums ``sum_b w_b v^T (H_b v)_l`` (no host sync per
    probe); ``hvp[l]``: for the collected layers, ``(len(mine), *shape)`` sums
    ``sum_b w_b (H_b v)_l``.
    """

    def __init__(self, mine: list[int], collect: Sequence[int]) -> None:
        self.mine = mine  # positions in the round's probe ids that this rank evaluates
        self.collect = collect
        self.acc: dict[int, torch.Tensor] = {}
        self.hvp: dict[int, torch.Tensor] = {}

    def start(self, group: Sequence[int], tensors: dict[int, torch.Tensor]) -> None:
        for l in group:
            if l not in self.acc:
                self.acc[l] = torch.zeros(len(self.mine), dtype=torch.float64, device=tensors[l].device)

    def add_batched(self, group: Sequence[int], vecs: dict[int, torch.Tensor], hvps: Sequence[torch.Tensor | None],
                    weight: float) -> None:
        for l, hv in zip(group, hvps):
            if hv is not None:
                self.acc[l] += weight * (vecs[l] * hv).flatten(1).sum(1, dtype=torch.float64)
                if l in self.collect:
                    self.hvp[l] = self.hvp.get(l, 0) + weight * hv.detach()

    def add_one(self, l: int, jj: int, vecs: dict[int, torch.Tensor], hv: torch.Tensor, weight: float) -> None:
        self.acc[l][jj] += weight * (vecs[l][jj] * hv).sum(dtype=torch.float64)
        if l in self.collect:
            if l not in self.hvp:
                self.hvp[l] = torch.zeros_like(vecs[l])
            self.hvp[l][jj] += weight * hv.detach()


def probe_round(setup: ProbeSetup, groups: Sequence[Sequence[int]], probe_ids: Sequence[int],
                collect: Sequence[int] = ()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Samples ``v_l^T (H v)_l`` of one round: a ``(len(probe_ids), n_layers)`` float64 tensor.

    Each group gets one HVP per probe, with the probes of the group's layers stacked. A
    layer whose gradient does not reach the loss (unused) or carries no autograd graph
    (the loss is at most linear in it) has a zero block and zero samples - unless
    ``setup.no_graph_is_zero`` is False, then a missing graph raises.

    For the layers in ``collect`` it also returns the data-set HVPs ``(H v)_l`` of the
    round's probes, a ``(len(probe_ids), n_l)`` tensor each (for the control variate).

    Raises:
        DoubleBackwardFailure: a backward of first or second order failed.
    """
    mine = [j for j, i in enumerate(probe_ids) if setup.comm.mine(i)]
    active = sorted({l for g in groups for l in g})
    setup.target.new_round()
    sums = _RoundSums(mine, collect)
    if mine and active:
        for b, weight in enumerate(setup.data.weights):
            _one_batch(setup, sums, groups, active, probe_ids, b, weight)
    return _gather(setup, sums, len(probe_ids))


def _one_batch(setup: ProbeSetup, sums: _RoundSums, groups: Sequence[Sequence[int]], active: list[int],
               probe_ids: Sequence[int], b: int, weight: float) -> None:
    """Forward and first-order backward of batch ``b`` (graph kept), then every group's HVPs."""
    loss, tensors = setup.target.forward(b, active)
    try:
        grads = torch.autograd.grad(loss, [tensors[l] for l in active], create_graph=True, allow_unused=True)
    except RuntimeError as exc:  # e.g. an op whose first backward needs a missing input
        raise DoubleBackwardFailure(str(exc)) from exc
    g = dict(zip(active, grads))
    for group in groups:
        live = _live_layers(setup, group, g)
        if live:
            _group_hvps(setup, sums, live, g, tensors, probe_ids, b, weight)


def _live_layers(setup: ProbeSetup, group: Sequence[int], g: dict[int, torch.Tensor | None]) -> list[int]:
    """The group's layers whose gradient has a graph (the others have zero samples, or raise)."""
    dead = [l for l in group if g[l] is None or not g[l].requires_grad]  # type: ignore[union-attr]
    if dead and not setup.no_graph_is_zero and any(g[l] is not None for l in dead):
        raise DoubleBackwardFailure("the gradient has no autograd graph", setup.layer_names[dead[0]])
    return [l for l in group if l not in dead]


def _group_hvps(setup: ProbeSetup, sums: _RoundSums, group: list[int], g: dict[int, torch.Tensor],
                tensors: dict[int, torch.Tensor], probe_ids: Sequence[int], b: int, weight: float) -> None:
    """Add ``w_b v^T (H_b v)_l`` of this rank's probes for the layers of one group."""
    outs = [g[l] for l in group]
    ins = [tensors[l] for l in group]
    vecs = {l: torch.stack([setup.target.probe(probe_ids[j], l, b, tensors[l]) for j in sums.mine]) for l in group}
    sums.start(group, tensors)
    batched = _batched_hvps(setup, outs, ins, [vecs[l] for l in group])
    try:
        if batched is not None:
            sums.add_batched(group, vecs, batched, weight)
        else:
            _looped_hvps(setup, sums, group, outs, ins, vecs, weight)
    except DoubleBackwardFailure:
        raise  # already names the layer
    except (RuntimeError, NotImplementedError) as exc:
        raise DoubleBackwardFailure(str(exc)) from exc


def _batched_hvps(setup: ProbeSetup, outs: list[torch.Tensor], ins: list[torch.Tensor],
                  vecs: list[torch.Tensor]) -> Sequence[torch.Tensor | None] | None:
    """All probes' HVPs in one vmapped backward, or None where the loop must run instead."""
    if not setup.vmap:
        return None
    try:
        batched = torch.autograd.grad(outs, ins, grad_outputs=vecs, retain_graph=True, is_grads_batched=True,
                                      allow_unused=True)
    except (RuntimeError, NotImplementedError):
        return None  # no batching rule for some op: the loop (which may raise)
    if not setup.no_graph_is_zero and any(hv is None for hv in batched):
        return None  # let the loop name the failure
    return batched


def _looped_hvps(setup: ProbeSetup, sums: _RoundSums, group: list[int], outs: list[torch.Tensor],
                 ins: list[torch.Tensor], vecs: dict[int, torch.Tensor], weight: float) -> None:
    """One backward per probe of this rank."""
    for jj in range(len(sums.mine)):
        hvs = torch.autograd.grad(outs, ins, grad_outputs=[vecs[l][jj] for l in group], retain_graph=True,
                                  allow_unused=True)
        for l, hv in zip(group, hvs):
            if hv is None and not setup.no_graph_is_zero:
                # the path from W_l to its gradient is cut: a once-differentiable custom
                # backward ran without building a graph
                raise DoubleBackwardFailure("the gradient's graph does not reach the weight", setup.layer_names[l])
            if hv is not None:
                sums.add_one(l, jj, vecs, hv, weight)


def _gather(setup: ProbeSetup, sums: _RoundSums, n_probes: int) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """This rank's sums into full ``(n_probes, ...)`` tensors, summed over the ranks."""
    samples = torch.zeros(n_probes, setup.n_layers, dtype=torch.float64)
    for l, a in sums.acc.items():
        samples[sums.mine, l] = a.cpu()
    collected = {}
    for l in sums.collect:  # collectives in the same order on every rank: collected layers, then samples
        w = setup.target.weights[l]  # type: ignore[attr-defined]  # only weight targets collect
        full = torch.zeros((n_probes, *w.shape), dtype=w.dtype, device=w.device)
        if l in sums.hvp:
            full[sums.mine] = sums.hvp[l].to(w.dtype)
        collected[l] = setup.comm.sum_(full).flatten(1)
    return setup.comm.sum_(samples), collected
