"""Tiny models whose exact Hessian blocks fit in memory, and helpers to compute them."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """conv(1->2, 3x3) -> tanh -> linear(18->6) -> tanh -> linear(6->3): 18 + 108 + 18 weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc1 = nn.Linear(18, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x)).flatten(1)
        return self.fc2(torch.tanh(self.fc1(h)))


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny tensors: threads only add overhead (and CI has 2 cores)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny():
    """(model, batches of 10 + 10 + 3 examples, loss_fn, layer names)."""
    torch.manual_seed(0)
    model = TinyNet().double()
    x = torch.randn(23, 1, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (23,))
    batches = [(x[:10], y[:10]), (x[10:20], y[10:20]), (x[20:], y[20:])]
    return model, batches, nn.CrossEntropyLoss(), ["conv", "fc1", "fc2"]


def dataset_loss_of(model, batches, loss_fn, name, w):
    """Mean loss over all examples as a function of layer ``name``'s weight."""
    n = sum(len(x) for x, _ in batches)
    total = 0.0
    for x, y in batches:
        out = torch.func.functional_call(model, {f"{name}.weight": w}, (x,), strict=False)
        total = total + loss_fn(out, y) * (len(x) / n)
    return total


def exact_block(model, batches, loss_fn, name):
    """Exact Hessian block of the data set's mean loss w.r.t. ``name``'s weight, flattened."""
    w0 = dict(model.named_modules())[name].weight.detach().clone()
    h = torch.func.hessian(lambda w: dataset_loss_of(model, batches, loss_fn, name, w))(w0)
    return h.reshape(w0.numel(), w0.numel()).detach()


@pytest.fixture(scope="session")
def exact(tiny):
    model, batches, loss_fn, names = tiny
    return {n: exact_block(model, batches, loss_fn, n) for n in names}
