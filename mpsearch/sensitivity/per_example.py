"""Per-example inner products of weight gradients, from a layer's input and output gradients.

For a layer ``s = W * x`` (Linear or Conv, any bias), the gradient of example ``n`` in the
output direction ``d`` is ``G_n(d) = sum_t d_nt x_nt^T`` (t: tokens or output pixels), so

    <G_n(a), G_n(b)> = sum_{t,t'} (a_nt . b_nt') (x_nt . x_nt')

is computed from two small Gram matrices (or from the materialised gradients when those are
smaller) without ever forming a gradient per example of the whole model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


def supports(module: nn.Module) -> bool:
    """True for the layer types this module computes per-example gradients of."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return module.padding_mode == "zeros" and not isinstance(module.padding, str)
    return isinstance(module, SUPPORTED)


def _patches(module: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """``(n, groups, C_in/groups * kernel, L)`` input patches of a conv, ``(n, 1, in, T)`` of a linear."""
    if isinstance(module, nn.Linear):
        return x.reshape(n, -1, x.shape[-1]).transpose(1, 2).unsqueeze(1)
    if isinstance(module, nn.Conv1d):
        x = x.unsqueeze(2)
        k, s, p, d = (1, *module.kernel_size), (1, *module.stride), (0, *module.padding), (1, *module.dilation)
    else:
        k, s, p, d = module.kernel_size, module.stride, module.padding, module.dilation
    cols = F.unfold(x, k, dilation=d, padding=p, stride=s)  # (N, C_in * kh * kw, L)
    return cols.reshape(n, module.groups, -1, cols.shape[-1])


def _outputs(module: nn.Module, d: torch.Tensor, n: int) -> torch.Tensor:
    """``(k, n, groups, C_out/groups, L)`` output gradients (``d``: ``(k, *output shape)``)."""
    k = d.shape[0]
    if isinstance(module, nn.Linear):
        return d.reshape(k, n, -1, d.shape[-1]).transpose(2, 3).unsqueeze(2)
    return d.reshape(k, n, module.groups, module.out_channels // module.groups, -1)


def inner_products(module: nn.Module, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None,
                   n: int) -> torch.Tensor:
    """``(k,)`` float64 sums over the ``n`` examples of ``<G_n(a_j), G_n(b_j)>`` (``b=None``: ``b=a``).

    Args:
        module: the Linear / Conv1d / Conv2d layer.
        x: its input (dim 0: ``n`` examples, example-major).
        a, b: ``(k, *output shape)`` stacks of output gradients.
        n: number of examples.
    """
    xs = _patches(module, x.detach(), n)  # (n, g, i, L)
    da = _outputs(module, a, n)  # (k, n, g, o, L)
    db = da if b is None else _outputs(module, b, n)
    o, i, length = da.shape[3], xs.shape[2], xs.shape[3]
    if length == 1:
        return ((da * db).sum((2, 3, 4), dtype=torch.float64) * xs.pow(2).sum((1, 2, 3), dtype=torch.float64)).sum(1)
    out = torch.zeros(da.shape[0], dtype=torch.float64, device=da.device)
    if o * i <= length * (o + i):  # materialise G_n (n, g, o, i), one probe at a time (memory)
        for j in range(da.shape[0]):
            ga = torch.einsum("ngol,ngil->ngoi", da[j], xs)
            gb = ga if b is None else torch.einsum("ngol,ngil->ngoi", db[j], xs)
            out[j] = (ga * gb).sum(dtype=torch.float64)
        return out
    gx = torch.einsum("ngil,ngim->nglm", xs, xs)
    for j in range(da.shape[0]):
        out[j] = (torch.einsum("ngol,ngom->nglm", da[j], db[j]) * gx).sum(dtype=torch.float64)
    return out
