"""The ``analyze`` verb: per-layer sensitivity of a model on calibration data."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Iterable, Sequence

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from mpsearch.core.checks import check_callable, check_iterable
from mpsearch.core.types import Layer, Sensitivity
from mpsearch.errors import ConfigError, unknown_name
from mpsearch.model import canonical_view
from mpsearch.sensitivity.data import Data, LossFn
from mpsearch.sensitivity.distributed import Comm
from mpsearch.sensitivity.layers import select_layers
from mpsearch.sensitivity.methods import METHODS, Context


def analyze(model: torch.nn.Module, loss_fn: LossFn, batches: Iterable[Any], method: str = "hessian",
            config: Any = None, layers: Sequence[Layer | str] | None = None, *,
            distributed: bool | None = None, cache_dir: str | os.PathLike[str] | None = None) -> Sensitivity:
    """Measure how sensitive each quantizable layer of ``model`` is.

    Args:
        model: the float network (left in its original train/eval mode and unchanged).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, the *mean* loss of a batch (e.g.
            ``nn.CrossEntropyLoss()``). Batches are weighted by their number of examples, so
            the figures are those of the data set's mean loss.
        batches: ``(inputs, targets)`` pairs; inputs a tensor (or tuple of tensors) whose
            first dimension is the batch. Held in memory for the whole run.
        method: "hessian" (Hutchinson traces, optional activation traces), "eigen" (top
            eigenvalue per layer), "fisher" (empirical Fisher trace, first order only) or
            "empirical" (loss increase with one layer quantized).
        config: the method's config (:class:`HessianConfig`, :class:`EigenConfig`,
            :class:`FisherConfig`, :class:`EmpiricalConfig`); None for defaults.
        layers: layers to analyse (``Layer`` values or module names); None means those
            found by ``mpsearch.model.discover``.
        distributed: shorthand for ``HessianConfig(distributed=True)``: split probes over
            the initialised ``torch.distributed`` group.
        cache_dir: a folder to cache the result in (opt-in; see
            :mod:`mpsearch.sensitivity.cache`): the same model weights, batches, loss, method,
            config, layers and versions return the stored result without measuring, and any
            change to them measures again. The recipe pipeline passes ``<cache root>/sensitivity``.

    Returns:
        :class:`Sensitivity` keyed by module name, in layer order, with ``meta`` saying how
        it was measured.

    Raises:
        UnsupportedModelError: "hessian"/"eigen" on a model whose backward cannot be
            differentiated (the message names the module and suggests method="fisher").
        ConfigError, UnknownNameError: bad arguments.
    """
    cls = METHODS.get(method)
    if cls is None:
        raise unknown_name("method", method, METHODS, "analyze")
    if config is None:
        config = cls.config_cls()
    elif not isinstance(config, cls.config_cls):
        raise ConfigError(f"analyze: config must be a {cls.config_cls.__name__} for method={method!r}, "
                          f"but got {type(config).__name__}")
    if distributed is not None:
        if not hasattr(config, "distributed"):
            raise ConfigError(f"analyze: distributed must be used with method='hessian', but got method={method!r}")
        config = replace(config, distributed=bool(distributed))
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"analyze: model must be a torch.nn.Module, but got {type(model).__name__}")
    check_callable(loss_fn, "analyze", "loss_fn", "a callable loss_fn(outputs, targets) -> scalar tensor")
    check_iterable(batches, "analyze", "batches", "an iterable of batches")
    if cache_dir is not None:
        from mpsearch.sensitivity import cache

        batches = cache.as_list(batches)
        key = cache.cache_key(model, loss_fn, batches, method, config, layers)
        return cache.cached(lambda: analyze(model, loss_fn, batches, method, config, layers), key, cache_dir)
    # Layer names are those of the canonical model (an nn.MultiheadAttention ``attn`` is
    # measured as ``attn.in_proj`` / ``attn.out_proj``); a canonical model is not copied.
    model = canonical_view(model)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        raise ConfigError("analyze: model must have parameters, but it has none") from None
    data = Data(batches, device)
    chosen = select_layers(model, layers, data.batches[0].inputs)
    comm = Comm(bool(getattr(config, "distributed", False)))
    # Sensitivity is measured in eval mode (BatchNorm uses running statistics, dropout off),
    # with every analysed weight requiring grad; both are restored afterwards.
    was_training = model.training
    flags = [(m.weight, m.weight.requires_grad) for _, m in chosen]
    model.eval()
    try:
        for w, _ in flags:
            w.requires_grad_(True)
        ctx = Context(model=model, loss_fn=loss_fn, data=data, names=[n for n, _ in chosen],
                      modules=[m for _, m in chosen], comm=comm)
        # The math attention kernel has the double backward that Hessian traces need; the
        # fused CPU/CUDA kernels do not. First-order methods run on it too, so every method
        # measures the same function.
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
            return cls().run(ctx, config)
    finally:
        for w, flag in flags:
            w.requires_grad_(flag)
        model.train(was_training)
