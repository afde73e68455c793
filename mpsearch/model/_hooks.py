"""Forward-hook side of discovery, for models torch.fx cannot trace.

Hooks see every call of a quantizable module with its real input and output, so shapes,
MACs and weight sharing are exact; which layers read the same tensor is found from tensor
identity. Residual adds and concats are plain tensor ops that hooks do not see, so joins
stay unknown in this mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mpsearch.model import kinds
from mpsearch.model.matmuls import MatmulCall, MatmulRecorder


@dataclass(frozen=True)
class HookCall:
    """One call of a quantizable module, as a forward hook saw it."""

    name: str
    input_key: tuple[Any, ...]  # equal keys = the same tensor with the same contents
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def _tensor_key(t: torch.Tensor) -> tuple[Any, ...]:
    # Views at the same address with the same layout hold the same values; _version
    # changes on in-place writes, so "x, then x.relu_()" are told apart.
    return (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype, t._version)


def walk(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[list[HookCall], list[MatmulCall]]:
    """Run ``model(*inputs)`` once with hooks on every quantizable module.

    Every module also gets a pre-hook and a hook that keep the stack of modules running, so
    the activation matmuls recorded meanwhile are named by their innermost module.

    The caller sets eval mode and no_grad. Hooks are removed before returning, also
    when the forward raises (the exception propagates unchanged).
    """
    calls: list[HookCall] = []
    stack: list[tuple[str, bool]] = []  # (module name, inside a quantizable layer?) of running modules

    def scope() -> tuple[str, bool]:
        return stack[-1] if stack else ("", False)

    def make_enter(name: str, quantizable: bool):
        def enter(module: nn.Module, args: Any) -> None:
            stack.append((name, quantizable or scope()[1]))
        return enter

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        if stack:
            stack.pop()

    # Input tensors are kept alive until the forward ends, so the allocator cannot reuse
    # an address for a different tensor and fake a shared input.
    keep_alive: list[torch.Tensor] = []

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            x = args[0] if args else kwargs.get("input", next(iter(kwargs.values()), None))
            if not isinstance(x, torch.Tensor) or not isinstance(output, torch.Tensor):
                raise RuntimeError(f"{name}: expected tensor input and output, got "
                                   f"{type(x).__name__} and {type(output).__name__}")
            keep_alive.append(x)
            calls.append(HookCall(name, _tensor_key(x), tuple(x.shape), tuple(output.shape)))
        return hook

    handles = []
    try:
        seen: set[int] = set()
        for name, m in model.named_modules():
            if id(m) in seen:
                continue
            seen.add(id(m))
            quantizable = kinds.is_quantizable(m)
            if quantizable:
                handles.append(m.register_forward_hook(make_hook(name), with_kwargs=True))
            handles.append(m.register_forward_pre_hook(make_enter(name, quantizable)))
            handles.append(m.register_forward_hook(leave, always_call=True))
        with MatmulRecorder(scope) as matmuls:
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return calls, matmuls.calls
