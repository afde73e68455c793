"""What the Hessian is taken with respect to: layer weights, or layer input activations."""

from __future__ import annotations

from typing import Sequence

import torch

from mpsearch.errors import UnsupportedModelError
from mpsearch.sensitivity.data import Data, LossFn, batch_loss
from mpsearch.sensitivity.probes import probe_seed, rademacher


class WeightTarget:
    """Layer weights (bias excluded: omega quantizes weights; biases stay at 32 bits).

    A probe depends on (seed, probe, layer) only - the same vector on every batch.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn, data: Data,
                 modules: Sequence[torch.nn.Module], seed: int) -> None:
        self.model, self.loss_fn, self.data, self.seed = model, loss_fn, data, seed
        self.weights = [m.weight for m in modules]
        self.n_elements = [w.numel() for w in self.weights]
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    def new_round(self) -> None:
        self._cache.clear()

    def forward(self, batch_index: int, layer_ids: Sequence[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        loss = batch_loss(self.model, self.loss_fn, self.data.batches[batch_index])
        return loss, {l: self.weights[l] for l in layer_ids}

    def probe(self, probe_index: int, layer_index: int, batch_index: int, like: torch.Tensor) -> torch.Tensor:
        key = (probe_index, layer_index)
        v = self._cache.get(key)
        if v is None:
            v = rademacher(like.shape, probe_seed(self.seed, probe_index, layer_index), like.device, like.dtype)
            self._cache[key] = v
        return v


class ActivationTarget:
    """The input tensor of each layer, as that layer alone sees it (HAWQ-V2 activations).

    A forward pre-hook routes the layer's input through a new autograd node, so the
    gradient taken w.r.t. it covers only this layer's use of the tensor - which is what
    quantizing this layer's input changes. The probe spans the whole data set's
    activations (one slice per batch, seeded by the batch index too); with the batch
    weights ``n_b/N`` a sample estimates the *per-example* trace ``(1/N) sum_i tr
    d2 loss_i / dx_i^2``.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn, data: Data,
                 modules: Sequence[torch.nn.Module], names: Sequence[str], seed: int) -> None:
        self.model, self.loss_fn, self.data, self.seed = model, loss_fn, data, seed
        self.modules, self.names = list(modules), list(names)
        self._captured: dict[int, list[torch.Tensor]] = {}
        self._want: set[int] = set()
        # elements of one example's input, found on a first no-grad pass
        shapes = self._shapes()
        self.n_elements = [int(torch.Size(s[1:]).numel()) for s in shapes]
        self.input_shapes = shapes

    def _hook(self, index: int):
        def pre(_mod: torch.nn.Module, args: tuple) -> tuple | None:
            if index not in self._want or not args or not isinstance(args[0], torch.Tensor):
                return None
            x = args[0]
            x = x.view_as(x) if x.requires_grad else x.detach().requires_grad_(True)
            self._captured.setdefault(index, []).append(x)
            return (x, *args[1:])
        return pre

    def _shapes(self) -> list[tuple[int, ...]]:
        shapes: dict[int, tuple[int, ...]] = {}
        hooks = [m.register_forward_pre_hook(
            (lambda i: lambda _m, a: shapes.setdefault(i, tuple(a[0].shape)) and None)(i))
            for i, m in enumerate(self.modules)]
        try:
            with torch.no_grad():
                batch_loss(self.model, self.loss_fn, self.data.batches[0])
        finally:
            for h in hooks:
                h.remove()
        missing = [self.names[i] for i in range(len(self.modules)) if i not in shapes]
        if missing:
            raise UnsupportedModelError(f"analyze: every layer must run in the forward pass to get an activation "
                                        f"trace, but {missing[:3]} did not")
        return [shapes[i] for i in range(len(self.modules))]

    def new_round(self) -> None:
        pass

    def forward(self, batch_index: int, layer_ids: Sequence[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        self._captured = {}
        self._want = set(layer_ids)
        hooks = [self.modules[l].register_forward_pre_hook(self._hook(l)) for l in layer_ids]
        try:
            loss = batch_loss(self.model, self.loss_fn, self.data.batches[batch_index])
        finally:
            for h in hooks:
                h.remove()
        out = {}
        for l in layer_ids:
            got = self._captured.get(l, [])
            if len(got) != 1:
                raise UnsupportedModelError(
                    f"analyze: activation traces need each layer called once per forward, but {self.names[l]!r} "
                    f"was called {len(got)} times")
            out[l] = got[0]
        self._captured = {}
        return loss, out

    def probe(self, probe_index: int, layer_index: int, batch_index: int, like: torch.Tensor) -> torch.Tensor:
        return rademacher(like.shape, probe_seed(self.seed, probe_index, layer_index, batch_index + 1),
                          like.device, like.dtype)
