"""canonicalize(): a copy of a model whose every quantizable weight sits in a plain layer module.

Some modules hide their weights from anything that works module by module:

* ``nn.MultiheadAttention`` keeps q/k/v in one packed Parameter and reads ``out_proj.weight``
  directly; it becomes :class:`~mpsearch.model.attention.PackedAttention`, whose packed
  projection is ONE ``nn.Linear`` child ``in_proj`` (weight ``[3E, E]``, one bit-width for q, k
  and v, which are one tensor in the user's model) and whose ``out_proj`` is a plain
  ``nn.Linear``. Discovered names: ``<mha>.in_proj`` and ``<mha>.out_proj``.
* ``transformers``' ``Conv1D`` (GPT-2, weight stored ``[in, out]``) becomes an ``nn.Linear``
  with the transposed weight, under the same name. It is recognised by class name and module
  path, so this package never imports ``transformers``.

Everything downstream (quantizers, sensitivity, the executor) then meets only Linear, Conv and
Embedding modules. Discovery runs on the canonical model, so every caller that looks layers
up by name (quantize, analyze, cost_table, to_integer) must run on ``canonicalize(model)`` too.

Weight ties survive: the copy is one ``copy.deepcopy`` (which keeps a Parameter shared by
two modules shared), and the rewritten modules reuse the copied Parameters. A ``Conv1D`` whose
weight is shared with another module is refused, since its transpose cannot stay shared.
"""

from __future__ import annotations

import copy
from typing import Iterator

from torch import nn

from mpsearch.errors import UnsupportedModelError
from mpsearch.model.attention import PackedAttention, linear_with


def _is_hf_conv1d(m: nn.Module) -> bool:
    return any(c.__name__ == "Conv1D" and c.__module__.split(".")[0] == "transformers" for c in type(m).__mro__)


def _needs_rewrite(m: nn.Module) -> bool:
    return isinstance(m, nn.MultiheadAttention) or _is_hf_conv1d(m)


def is_canonical(model: nn.Module) -> bool:
    """True when ``model`` has no module that :func:`canonicalize` would rewrite."""
    return not any(_needs_rewrite(m) for m in model.modules())


Owners = dict[int, list[tuple[int, str, str]]]


def _parameter_owners(model: nn.Module) -> Owners:
    """id(Parameter) -> (id(module), attribute, ``module.attr`` name) of every slot that holds it."""
    owners: Owners = {}
    for mname, m in model.named_modules(remove_duplicate=False):
        for pname, p in m._parameters.items():
            if p is not None:
                owners.setdefault(id(p), []).append((id(m), pname, f"{mname}.{pname}" if mname else pname))
    return owners


def _conv1d_as_linear(m: nn.Module, name: str, owners: Owners) -> nn.Linear:
    weight = m.weight  # [in, out]
    # The same module reached under two names is fine; another module holding the weight is not.
    shared = [full for mid, attr, full in owners.get(id(weight), []) if (mid, attr) != (id(m), "weight")]
    if shared:
        raise UnsupportedModelError(
            f"canonicalize: {name} (Conv1D) must own its weight, because it becomes an nn.Linear with the "
            f"transposed weight, but the weight is shared with {shared}")
    # The transposed copy is a new Parameter; the bias Parameter is reused as is.
    lin = linear_with(nn.Parameter(weight.detach().t().contiguous(), requires_grad=weight.requires_grad),
                       m.bias)
    return lin.train(m.training)


def _replacement(m: nn.Module, name: str, owners: Owners) -> nn.Module:
    if isinstance(m, nn.MultiheadAttention):
        return PackedAttention.from_multihead(m, name)
    return _conv1d_as_linear(m, name, owners)


def _slots(model: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Module, str]]:
    """(parent, attribute, child, child's FQN) for every child slot, shared modules at each slot."""
    for pname, parent in model.named_modules(remove_duplicate=False):
        for attr, child in parent._modules.items():
            if child is not None:
                yield parent, attr, child, f"{pname}.{attr}" if pname else attr


def canonicalize(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with MultiheadAttention and HF Conv1D rewritten into plain Linears.

    The user's model is never changed. The copy computes the same function (to float
    rounding) and keeps the training flags and Parameter ties of the original; a module shared
    by several parents is replaced by one shared rewritten module. The copy is returned even
    when nothing needed rewriting (:func:`is_canonical` tells beforehand).

    Args:
        model: any ``torch.nn.Module``.

    Returns:
        The canonical copy; names of untouched modules are unchanged, an MHA ``attn`` gains
        children ``attn.in_proj`` and ``attn.out_proj``, a ``Conv1D`` keeps its name.

    Raises:
        UnsupportedModelError: ``model`` is not an ``nn.Module``, cannot be deep-copied, or
            holds an MHA / Conv1D that cannot be rewritten (the message names it and the rule).

    Example:
        >>> cmodel = canonicalize(model)
        >>> layers = discover(cmodel, example_inputs)   # discover canonicalizes itself, too
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"canonicalize: model must be a torch.nn.Module, but got "
                                    f"{type(model).__module__}.{type(model).__qualname__}")
    try:
        copied = copy.deepcopy(model)
    except Exception as exc:  # deepcopy raises whatever the model's attributes raise
        raise UnsupportedModelError(f"canonicalize: model {type(model).__name__} must support copy.deepcopy, "
                                    f"but it raised {type(exc).__name__}: {exc}") from exc
    owners = _parameter_owners(copied)
    if _needs_rewrite(copied):
        return _replacement(copied, "", owners)
    done: dict[int, nn.Module] = {}  # id(old module) -> its replacement, so sharing is kept
    for parent, attr, child, fqn in list(_slots(copied)):
        if _needs_rewrite(child):
            if id(child) not in done:
                done[id(child)] = _replacement(child, fqn, owners)
            parent._modules[attr] = done[id(child)]
    return copied


def canonical_view(model: nn.Module) -> nn.Module:
    """``model`` itself when it is canonical, else :func:`canonicalize` (a rewritten copy).

    For verbs that only read the model (``analyze``, ``cost_table``): names then match
    :func:`~mpsearch.model.discover`'s, and a canonical model is not copied for nothing.
    """
    if isinstance(model, nn.Module) and is_canonical(model):
        return model
    return canonicalize(model)
