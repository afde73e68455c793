"""discover(): the quantizable layers of any nn.Module, with shapes, MACs and ties.

Discovery runs on the canonical model (:func:`mpsearch.model.canonicalize`: MultiheadAttention
and transformers' Conv1D rewritten into plain Linears, on a copy), so layer names are the
canonical model's: an MHA ``attn`` gives ``attn.in_proj`` and ``attn.out_proj``. Every caller
that looks these names up in a model must run on ``canonicalize(model)`` too. A model with
nothing to rewrite is read as it is (no copy).

torch.fx is tried first (it also sees residual adds and concats); where it cannot trace
the model (data-dependent control flow, unsupported Python; most ``transformers`` models),
forward hooks take over and say so in one INFO line on the ``mpsearch`` logger. Both see the
activation matmuls of attention (:mod:`mpsearch.model.matmuls`).

Layers holding one weight Parameter (an embedding and the LM head tied to it) are listed in
each other's ``shares_weight_with``, and so form one tie group (:func:`input_ties`).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from torch import nn

from mpsearch.core.types import Join, Layer
from mpsearch.errors import ConfigError, UnsupportedModelError
from mpsearch.model import _fx, _hooks, kinds
from mpsearch.model.canonical import canonicalize, is_canonical
from mpsearch.model.graph import ModelGraph
from mpsearch.model.matmuls import name_matmuls

log = logging.getLogger("mpsearch")


def as_input_tuple(example_inputs: Any, where: str = "discover") -> tuple[torch.Tensor, ...]:
    """A tensor or a tuple/list of tensors, as a tuple; anything else is a ConfigError."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)) and example_inputs and all(
            isinstance(t, torch.Tensor) for t in example_inputs):
        return tuple(example_inputs)
    shown = type(example_inputs).__name__ if not isinstance(example_inputs, (tuple, list)) else \
        f"{type(example_inputs).__name__} of {[type(t).__name__ for t in example_inputs]}"
    raise ConfigError(f"{where}: example_inputs must be a torch.Tensor or a non-empty tuple of tensors, "
                      f"but got {shown}")


def _model_name(model: Any) -> str:
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def discover_graph(model: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor]) -> ModelGraph:
    """Find the quantizable layers of ``model`` and how they connect.

    The model runs once (twice if fx fails) on ``example_inputs`` in eval mode under
    ``torch.no_grad``; every module's training flag is restored afterwards and no hooks
    are left behind.

    Args:
        model: any ``torch.nn.Module``; it is not changed (discovery reads its canonical
            copy when it holds MultiheadAttention or transformers' Conv1D).
        example_inputs: a tensor or a tuple of tensors passed as ``model(*inputs)``; the
            leading dimension of the first one is the batch (MACs are per example).

    Returns:
        A :class:`ModelGraph` of the canonical model.

    Raises:
        UnsupportedModelError: ``model`` is not an ``nn.Module``; it holds a module that
            cannot be made canonical; the forward fails on ``example_inputs`` (the message
            carries the original error); or the model has no quantizable layer.
        ConfigError: ``example_inputs`` is not a tensor or tuple of tensors.
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"discover: model must be a torch.nn.Module, but got {_model_name(model)}")
    inputs = as_input_tuple(example_inputs)
    if not is_canonical(model):
        model = canonicalize(model)
    first = inputs[0]
    batch_size = int(first.shape[0]) if first.dim() > 0 else 1
    name = type(model).__name__

    training = {m: m.training for m in model.modules()}
    joins: list[Join] = []
    matmuls: list[Any] = []
    try:
        model.eval()
        with torch.no_grad():
            try:
                if kinds.is_quantizable(model):  # fx would trace into its forward (F.conv2d)
                    raise TypeError("the model is itself one quantizable layer")
                calls, joins, matmuls = _fx.walk(model, inputs)
                mode, fx_reason = "fx", ""
            except Exception as exc:  # fx fails in many ways (TraceError, TypeError, ...)
                fx_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                try:
                    calls, matmuls = _hooks.walk(model, inputs)
                except Exception as run_exc:
                    shapes = [tuple(t.shape) for t in inputs]
                    raise UnsupportedModelError(
                        f"discover: model {name} must run forward on example_inputs of shapes {shapes}, "
                        f"but it raised {type(run_exc).__name__}: {run_exc}") from run_exc
                mode = "hooks"
    finally:
        for m, flag in training.items():
            m.training = flag

    graph = _assemble(model, calls, joins, mode, batch_size, matmuls)
    if mode == "fx":
        log.info("discover: %s traced with torch.fx (mode=fx): %d quantizable layers, %d joins",
                 name, len(graph.layers), len(graph.joins))
    if graph.activation_matmuls:
        log.info("discover: %d matmul(s) between activations (attention), %d MACs per example; not layers, "
                 "counted in the model's MACs", len(graph.activation_matmuls), graph.activation_macs)
    else:
        log.info("discover: torch.fx could not trace %s (%s); using forward hooks (mode=hooks): "
                 "%d quantizable layers, shapes and MACs exact, joins unknown",
                 name, fx_reason, len(graph.layers))
    if graph.unsupported:
        log.info("discover: %d module(s) hold weights of an unsupported kind and stay in float: %s",
                 len(graph.unsupported), ", ".join(f"{n} ({t})" for n, t in graph.unsupported))
    if graph.not_called:
        log.info("discover: %d quantizable module(s) did not run as modules on example_inputs and stay "
                 "in float: %s", len(graph.not_called), ", ".join(graph.not_called))
    if graph.n_calls:
        log.info("discover: layer(s) called more than once (weight sharing), MACs summed over calls: %s",
                 ", ".join(f"{n} x{c}" for n, c in graph.n_calls.items()))
    if not graph.layers:
        kinds_list = ", ".join(c.__name__ for c in kinds.QUANTIZABLE)
        raise UnsupportedModelError(
            f"discover: model {name} must contain at least one quantizable layer ({kinds_list}) that runs "
            f"in forward, but it has none" + (f"; unsupported weight layers: {list(graph.unsupported)}"
                                              if graph.unsupported else ""))
    return graph


def discover(model: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor]) -> list[Layer]:
    """The quantizable layers of ``model`` in execution order.

    Names are those of ``canonicalize(model)`` (an ``nn.MultiheadAttention`` ``attn`` gives
    ``attn.in_proj`` and ``attn.out_proj``). See :func:`discover_graph` for arguments, errors,
    the joins, unsupported modules and attention matmuls.

    Example:
        >>> layers = discover(model, torch.randn(1, 3, 32, 32))
        >>> layers[0].name, layers[0].kind, layers[0].macs
    """
    return list(discover_graph(model, example_inputs).layers)


def _weight_sharing(modules: dict[str, nn.Module], order: Sequence[str]) -> dict[str, list[str]]:
    """Layer -> the other layers whose module holds the same weight Parameter, in ``order``."""
    by_weight: dict[int, list[str]] = {}
    for n in order:
        by_weight.setdefault(id(modules[n].weight), []).append(n)
    return {n: [o for o in by_weight[id(modules[n].weight)] if o != n] for n in order}


def _assemble(model: nn.Module, calls: Sequence[Any], joins: Sequence[Join], mode: str,
              batch_size: int, matmuls: Sequence[Any] = ()) -> ModelGraph:
    """Turn per-call records (fx or hooks) into Layers: one per module, MACs summed over calls."""
    modules = dict(model.named_modules())
    order: list[str] = []
    macs: dict[str, int] = {}
    first: dict[str, Any] = {}
    n_calls: dict[str, int] = {}
    readers: dict[Any, list[str]] = {}  # input key -> layers reading it
    for c in calls:
        spec = kinds.layer_spec(modules[c.name])
        m, exact = kinds.macs_per_example(spec, c.output_shape, batch_size)
        if not exact:
            log.warning("discover: %s output %s does not split into batch %d; MACs count the whole call",
                        c.name, c.output_shape, batch_size)
        if c.name not in first:
            order.append(c.name)
            first[c.name] = c
        macs[c.name] = macs.get(c.name, 0) + m
        n_calls[c.name] = n_calls.get(c.name, 0) + 1
        if spec.kind in kinds.LOOKUP_KINDS:  # indices: no activation quantizer to share
            continue
        group = readers.setdefault(c.input_key, [])
        if c.name not in group:
            group.append(c.name)

    shares: dict[str, list[str]] = {n: [] for n in order}
    for group in readers.values():
        for a in group:
            shares[a].extend(b for b in group if b != a and b not in shares[a])
    rank = {n: i for i, n in enumerate(order)}
    reached: dict[str, list[str]] = {n: [] for n in order}
    for j in joins:
        for n in j.inputs:
            if j.name not in reached[n]:
                reached[n].append(j.name)

    tied = _weight_sharing(modules, order)
    layers = []
    for i, n in enumerate(order):
        spec = kinds.layer_spec(modules[n])
        c = first[n]
        layers.append(Layer(
            name=n, kind=spec.kind, weight_shape=spec.weight_shape, n_params=spec.n_params, macs=macs[n],
            input_shape=c.input_shape, output_shape=c.output_shape, index=i, has_bias=spec.has_bias,
            in_channels=spec.in_channels, out_channels=spec.out_channels, kernel_size=spec.kernel_size,
            stride=spec.stride, padding=spec.padding, groups=spec.groups,
            shares_input_with=tuple(sorted(shares[n], key=rank.__getitem__)),
            joins=tuple(reached[n]),
            shares_weight_with=tuple(tied[n]),
        ))

    unsupported = tuple((n, type(m).__name__) for n, m in modules.items() if kinds.holds_float_weights(m))
    not_called = tuple(n for n, m in modules.items() if kinds.is_quantizable(m) and n not in first)
    return ModelGraph(
        layers=tuple(layers), joins=tuple(joins), unsupported=unsupported, mode=mode, not_called=not_called,
        n_calls={n: k for n, k in n_calls.items() if k > 1}, batch_size=batch_size,
        activation_matmuls=name_matmuls(list(matmuls), batch_size))
