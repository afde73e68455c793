"""Where the loss curves: a traced forward pass split into linear ops and curvature sites.

The Hessian block of a layer's weight ``W`` is a sum over the ops between ``W`` and the loss
(the chain rule, twice): ops that are linear (or piecewise linear) in their differentiable
inputs add nothing of their own, and every other op ``a = f(s)`` (an activation, a
LayerNorm, softmax attention, a product of two activations, the loss itself) adds
``J^T M J`` with ``J = ds/dW`` and ``M = d2 (g . f) / ds2`` its *second-order adjoint*
(``g = dL/da``). :class:`OpTracer` watches one forward pass (a ``TorchFunctionMode``) and
records those *sites*, or a *blocker*: the first op that it cannot place, that mixes examples,
or that reuses an analysed weight; then the caller falls back to Hutchinson probes.

Only layers whose weights require grad are differentiated: the caller turns ``requires_grad``
off for every other parameter, so "depends on an analysed weight" is ``requires_grad``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

#: ops linear in their differentiable inputs (one such input, or a sum of them)
LINEAR = frozenset({
    "view", "reshape", "flatten", "unflatten", "view_as", "reshape_as", "contiguous", "clone", "squeeze",
    "unsqueeze", "expand", "expand_as", "__getitem__", "narrow", "split", "chunk", "unbind", "cat", "stack",
    "add", "__add__", "__radd__", "sub", "__sub__", "__rsub__", "neg", "__neg__", "sum", "mean",
    "transpose", "permute", "t", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "pad", "linear", "conv1d", "conv2d", "batch_norm", "dropout", "dropout1d", "dropout2d", "to", "float",
    "type_as", "masked_fill", "__mul__", "__rmul__", "mul", "__truediv__", "div", "matmul", "__matmul__",
    "bmm", "mm", "einsum",
})
#: piecewise linear: zero second derivative almost everywhere
PIECEWISE = frozenset({
    "relu", "relu6", "hardtanh", "leaky_relu", "max_pool1d", "max_pool2d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "abs", "clamp", "clip", "threshold",
})
#: elementwise ops with a second derivative: sites with a diagonal second-order adjoint
ELEMENTWISE = frozenset({"tanh", "sigmoid", "gelu", "silu", "softplus", "elu", "selu", "celu", "mish", "exp",
                         "logsigmoid"})
#: sites whose second-order adjoint is dense within a row: the method stops at them (see ``_DENSE``)
ROWWISE = frozenset({"layer_norm", "group_norm", "softmax", "log_softmax", "scaled_dot_product_attention"})
PRODUCTS = frozenset({"__mul__", "__rmul__", "mul", "matmul", "__matmul__", "bmm", "einsum", "__truediv__", "div"})
LOSSES = frozenset({"cross_entropy", "mse_loss"})
#: why sites with a dense second-order adjoint block the method: measured on gpt_tiny (LayerNorm,
#: attention), their per-example samples needed 10-100x the probes Hutchinson does
_DENSE = "a site with a dense second derivative, which Hutchinson probes sample better"
#: position and default of the ``dim`` argument of ops that may run along dim 0
_DIM_ARG = {"sum": (1, None), "mean": (1, None), "softmax": (1, None), "log_softmax": (1, None), "cat": (1, 0),
            "stack": (1, 0), "narrow": (1, None), "split": (2, 0), "chunk": (2, 0), "unbind": (1, 0)}
_IGNORED = frozenset({"size", "dim", "numel", "__len__", "__format__", "__repr__", "detach",
                      "requires_grad_", "__bool__", "item", "tolist", "__iter__", "__index__", "__eq__", "__ne__"})


@dataclass
class Site:
    """One curvature site: ``out = func(*args, **kwargs)``; ``inputs`` are its differentiable tensors."""

    name: str
    func: Callable[..., Any]
    args: tuple
    kwargs: dict
    inputs: list[torch.Tensor]
    out: torch.Tensor
    is_loss: bool = False


@dataclass
class Trace:
    """What one traced forward found: sites in call order, or the op that blocks the method."""

    sites: list[Site] = field(default_factory=list)
    blocker: str | None = None


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _dims(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(d) for d in (value if isinstance(value, (tuple, list)) else [value])]


def _bound(func: Callable[..., Any], args: tuple, kwargs: dict) -> dict[str, Any]:
    try:
        return dict(inspect.signature(func).bind(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        return dict(kwargs)


class OpTracer(TorchFunctionMode):
    """Record the curvature sites of one forward pass (model and loss) on ``n_examples`` examples.

    Every tensor that requires grad must keep the examples apart along dim 0 (its length a
    multiple of ``n_examples``, example-major), so that each site's ``M`` is block-diagonal
    over examples; an op that may mix them, runs in place, or has no rule here blocks.
    """

    def __init__(self, n_examples: int, weights: list[torch.Tensor]) -> None:
        super().__init__()
        self.n = n_examples
        self.trace = Trace()
        self._weights = {id(w) for w in weights}
        self._used: set[int] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.trace.blocker is None:
            why = self._place(func, args, kwargs, out)
            if why:
                self.trace.blocker = why
        return out

    def _place(self, func: Callable[..., Any], args: tuple, kwargs: dict, out: Any) -> str | None:
        name = getattr(func, "__name__", str(func))
        every = [t for t in _tensors((args, kwargs)) if t.requires_grad]
        grads = list({id(t): t for t in every}.values())
        outs = [t for t in _tensors(out) if t.requires_grad]
        if not grads or name in _IGNORED or (name == "__get__" and not outs):
            return None
        for w in grads:
            if id(w) in self._weights:
                if id(w) in self._used or name not in ("linear", "conv1d", "conv2d") or args[1] is not w:
                    return f"an analysed weight used twice or by {name}"
                self._used.add(id(w))
        if any(s.is_loss for s in self.trace.sites):
            return f"an op ({name}) after the loss"
        if name.endswith("_") and not name.endswith("__") or kwargs.get("inplace") or name.startswith("__i"):
            return f"in-place op {name}"
        if name in LOSSES:
            return self._loss(name, func, args, kwargs, out, grads)
        if any(t.dim() == 0 or t.shape[0] % self.n for t in outs):
            return f"{name} returns a tensor whose dim 0 is not the examples"
        b = _bound(func, args, kwargs)
        mixes = self._mixes_examples(name, b, args)
        if mixes:
            return mixes
        if name in PRODUCTS and (len(every) > 1 or (name in ("__truediv__", "div") and len(args) > 1
                                                   and isinstance(args[1], torch.Tensor) and args[1].requires_grad)):
            return f"{name} of two activations ({_DENSE})"
        if name in ("batch_norm", "dropout", "dropout1d", "dropout2d") and b.get("training"):
            return f"{name} in training mode (it mixes or samples examples)"
        if name in LINEAR or name in PIECEWISE:
            return None
        if name in ROWWISE:
            return f"{name} ({_DENSE})"
        if name in ELEMENTWISE:
            return self._site(name, func, args, kwargs, out, grads)
        return f"op {name} (no rule for its second derivative)"

    def _mixes_examples(self, name: str, b: dict[str, Any], args: tuple) -> str | None:
        first = next(iter(_tensors(args[:1])), None)
        nd = max(first.dim() if first is not None else 1, 1)
        if name in _DIM_ARG:
            pos, default = _DIM_ARG[name]
            dims = _dims(b.get("dim", args[pos] if len(args) > pos else default))
            if not dims:
                return f"{name} over every dimension (it mixes examples)"
            if any(d % nd == 0 for d in dims):
                return f"{name} along dim 0 (it mixes examples)"
        if name in ("transpose", "permute", "t"):
            dims = _dims(args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:] or None)
            moved = [d % nd for d in (dims[:2] if name == "transpose" else dims[:1])]
            if name == "t" or (name == "transpose" and 0 in moved) or (name == "permute" and moved != [0]):
                return f"{name} moves dim 0 (the examples)"
        if name == "__getitem__" and len(args) > 1:
            index = args[1][0] if isinstance(args[1], tuple) and args[1] else args[1]
            if not (index is Ellipsis or (isinstance(index, slice) and index == slice(None))):
                return "indexing along dim 0 (it selects examples)"
        if name == "layer_norm" and len(_dims(b.get("normalized_shape"))) >= nd:
            return "layer_norm over every dimension (it mixes examples)"
        return None

    def _site(self, name: str, func: Callable[..., Any], args: tuple, kwargs: dict, out: Any,
              grads: list[torch.Tensor]) -> str | None:
        if not isinstance(out, torch.Tensor):
            return f"{name} returns several tensors"
        self.trace.sites.append(Site(name, func, args, kwargs, grads, out))
        return None

    def _loss(self, name: str, func: Callable[..., Any], args: tuple, kwargs: dict, out: Any,
              grads: list[torch.Tensor]) -> str | None:
        b = _bound(func, args, kwargs)
        if b.get("reduction", "mean") not in ("mean", "sum") or b.get("size_average") is not None \
                or b.get("reduce") is not None or len(grads) != 1 or grads[0] is not args[0]:
            return f"{name} with options this method does not model"
        if grads[0].dim() == 0 or grads[0].shape[0] % self.n:
            return f"{name} on a tensor whose dim 0 is not the examples"
        if name == "cross_entropy":
            target = b.get("target")
            if b.get("weight") is not None or not isinstance(target, torch.Tensor) or target.is_floating_point() \
                    or bool((target == b.get("ignore_index", -100)).any()) or grads[0].dim() != 2:
                return "cross_entropy with class weights, ignored targets or probabilities"
        self.trace.sites.append(Site(name, func, args, kwargs, grads, out, is_loss=True))
        return None


def second_order_adjoint(site: Site, g: torch.Tensor, vecs: list[torch.Tensor]) -> list[torch.Tensor]:
    """``M v`` for ``k`` stacked probes ``vecs`` (one ``(k, *shape)`` per site input), with ``M`` the
    Hessian of ``g . func(inputs)`` in the inputs: a double backward through this op alone."""
    ids = {id(t): i for i, t in enumerate(site.inputs)}
    leaves = [t.detach().requires_grad_(True) for t in site.inputs]

    def swap(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return leaves[ids[id(obj)]] if id(obj) in ids else obj.detach()
        if isinstance(obj, (tuple, list)):
            return type(obj)(swap(o) for o in obj)
        if isinstance(obj, dict):
            return {k: swap(o) for k, o in obj.items()}
        return obj

    with torch.enable_grad():
        a = site.func(*swap(site.args), **swap(site.kwargs))
        first = torch.autograd.grad(a, leaves, g, create_graph=True)
        mv = torch.autograd.grad(first, leaves, vecs, is_grads_batched=True, allow_unused=True)
    return [torch.zeros_like(v) if m is None else m for m, v in zip(mv, vecs)]


def softmax_ce_factor(site: Site) -> tuple[torch.Tensor, float] | None:
    """``(p, scale)`` of a cross-entropy site on ``(R, C)`` logits: its Hessian in the logits is
    ``scale * blockdiag_r(diag(p_r) - p_r p_r^T)`` (label smoothing does not change it)."""
    if site.name != "cross_entropy":
        return None
    z = site.inputs[0].detach()
    red = _bound(site.func, site.args, site.kwargs).get("reduction", "mean")
    return F.softmax(z.double(), dim=1), (1.0 / z.shape[0] if red == "mean" else 1.0)
