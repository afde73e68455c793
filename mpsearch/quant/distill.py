"""ZeroQ's distilled data (Cai et al. 2020): inputs whose BatchNorm statistics match the model's.

Start from ``N(0, 1)`` inputs and optimise them with Adam so that, at every BatchNorm layer, the
per-channel mean and standard deviation of the BN's INPUT over the distilled batch (and over
every spatial position) match the layer's ``running_mean`` and ``sqrt(running_var + eps)``:

    loss = sum_BN ( ||mu_batch - running_mean||_2 + ||sigma_batch - sqrt(running_var + eps)||_2 )

The model runs in eval mode and its parameters are not changed. A model without BatchNorm has
no statistics to match and is refused with an :class:`UnsupportedModelError` saying so.
:func:`bn_statistics_error` measures the match: per BN, the largest ``|mu - running_mean| /
sqrt(running_var + eps)`` (mean error in units of the running std) and the largest
``|sigma / sqrt(running_var + eps) - 1|`` (relative std error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from mpsearch.core.checks import check_int, check_number, is_int
from mpsearch.errors import UnsupportedModelError, rule_error

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class DistillConfig:
    """Options of :func:`distill_data`.

    Attributes:
        n_iter: Adam steps on the inputs.
        lr: Adam's learning rate (ZeroQ uses 0.5 with a decay; we decay cosine to 0).
        batch_size: inputs optimised together (the statistics are those of one such batch).
        seed: draws the starting inputs.
    """

    n_iter: int = 500
    lr: float = 0.2
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.n_iter, "DistillConfig", "n_iter", min=1)
        check_number(self.lr, "DistillConfig", "lr", min=0, min_exclusive=True)
        check_int(self.batch_size, "DistillConfig", "batch_size", min=2)
        check_int(self.seed, "DistillConfig", "seed", min=0)


def _batchnorms(model: nn.Module, where: str) -> list[tuple[str, nn.Module]]:
    bns = [(n, m) for n, m in model.named_modules()
           if isinstance(m, _BN) and m.track_running_stats and m.running_mean is not None]
    if not bns:
        raise UnsupportedModelError(
            f"{where}: the model must hold a BatchNorm layer with running statistics (distilled data is made to "
            f"match them), but {type(model).__name__} has none; calibrate with real data instead "
            f"(a BN-folded model has lost its statistics: distil before folding)")
    return bns


def _stats_hooks(bns: Sequence[tuple[str, nn.Module]], store: dict[str, tuple[Tensor, Tensor]]) -> list[Any]:
    def make(name: str) -> Any:
        def hook(_m: nn.Module, args: tuple[Tensor, ...]) -> None:
            x = args[0]
            flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, N * spatial)
            mean = flat.mean(1)
            std = torch.sqrt(flat.var(1, unbiased=False) + _m.eps)  # type: ignore[operator]
            store[name] = (mean, std)
        return hook
    return [m.register_forward_pre_hook(make(n)) for n, m in bns]


def _loss(bns: Sequence[tuple[str, nn.Module]], store: dict[str, tuple[Tensor, Tensor]]) -> Tensor:
    total = torch.zeros(())
    for name, m in bns:
        mean, std = store[name]
        total = total + (mean - m.running_mean).norm() + (std - torch.sqrt(m.running_var + m.eps)).norm()  # type: ignore[operator]
    return total


def distill_data(model: nn.Module, n: int, input_shape: Sequence[int], config: DistillConfig | None = None
                 ) -> Tensor:
    """``n`` inputs of shape ``input_shape`` (one example, no batch dim) distilled from BN statistics.

    Args:
        model: a float model with BatchNorm layers (not BN-folded); left unchanged.
        n: number of inputs to make (in batches of ``config.batch_size``, seeds ``seed + i``).
        input_shape: one example's shape, e.g. ``(3, 32, 32)``.
        config: optimisation options.

    Returns:
        float32 tensor ``(n, *input_shape)`` on the model's device.

    Raises:
        UnsupportedModelError: the model has no BatchNorm with running statistics.
        ConfigError: bad ``n`` or ``input_shape``.
    """
    config = DistillConfig() if config is None else config
    check_int(n, "distill_data", "n", min=1)
    if not isinstance(input_shape, (tuple, list, torch.Size)) or not all(is_int(d, min=1) for d in input_shape):
        raise rule_error("distill_data", "input_shape", "a sequence of positive ints (one example's shape)",
                         input_shape)
    bns = _batchnorms(model, "distill_data")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    store: dict[str, tuple[Tensor, Tensor]] = {}
    hooks = _stats_hooks(bns, store)
    out = []
    try:
        for i, start in enumerate(range(0, n, config.batch_size)):
            size = max(2, min(config.batch_size, n - start))
            gen = torch.Generator().manual_seed(config.seed + i)
            x = torch.randn((size, *input_shape), generator=gen).to(device).requires_grad_(True)
            opt = torch.optim.Adam([x], lr=config.lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.n_iter)
            for _ in range(config.n_iter):
                opt.zero_grad()
                model(x)
                loss = _loss(bns, store)
                loss.backward()
                opt.step()
                sched.step()
            out.append(x.detach()[: n - start])
    finally:
        for h in hooks:
            h.remove()
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
        model.train(was_training)
    return torch.cat(out)[:n]


def bn_statistics_error(model: nn.Module, inputs: Tensor) -> dict[str, dict[str, float]]:
    """Per BN: ``mean_err`` (max ``|mu - running_mean| / running_std``) and ``std_rel_err`` of ``inputs``."""
    bns = _batchnorms(model, "bn_statistics_error")
    store: dict[str, tuple[Tensor, Tensor]] = {}
    hooks = _stats_hooks(bns, store)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    out = {}
    for name, m in bns:
        mean, std = store[name]
        run_std = torch.sqrt(m.running_var + m.eps)  # type: ignore[operator]
        out[name] = {"mean_err": float(((mean - m.running_mean) / run_std).abs().max()),
                     "std_rel_err": float((std / run_std - 1).abs().max())}
    return out
