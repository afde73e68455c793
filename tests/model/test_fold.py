"""fold_batchnorm(): exact fold arithmetic, equal eval outputs, and what is left alone."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from mpsearch.errors import UnsupportedModelError
from mpsearch.model import fold_batchnorm


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters (defaults would make BN ~identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 2)
            m.running_var.copy_(torch.rand(n, generator=g) * 3 + 0.1)
            if m.affine:
                m.weight.data.copy_(torch.randn(n, generator=g))
                m.bias.data.copy_(torch.randn(n, generator=g))


def _assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    # within 1e-5 relative to the output's scale
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


def test_fold_arithmetic_by_hand() -> None:
    conv = nn.Conv2d(1, 2, 1, bias=False)
    conv.weight.data = torch.tensor([[[[2.0]]], [[[-1.0]]]])
    bn = nn.BatchNorm2d(2, eps=0.0)
    bn.running_mean.copy_(torch.tensor([1.0, -2.0]))
    bn.running_var.copy_(torch.tensor([4.0, 0.25]))
    bn.weight.data = torch.tensor([3.0, 0.5])
    bn.bias.data = torch.tensor([1.0, 0.0])
    model = nn.Sequential(conv, bn)
    folded = fold_batchnorm(model)
    # channel 0: s = 3 / sqrt(4) = 1.5; W' = 2 * 1.5 = 3; b' = (0 - 1) * 1.5 + 1 = -0.5
    # channel 1: s = 0.5 / sqrt(0.25) = 1; W' = -1 * 1 = -1; b' = (0 + 2) * 1 + 0 = 2
    assert folded[0].weight.flatten().tolist() == [3.0, -1.0]
    assert folded[0].bias.tolist() == [-0.5, 2.0]  # bias created: conv had none
    assert isinstance(folded[1], nn.Identity)
    # the original is untouched
    assert conv.bias is None and conv.weight.flatten().tolist() == [2.0, -1.0]
    assert isinstance(model[1], nn.BatchNorm2d)


class _Net(nn.Module):
    """conv-bn-relu, a conv whose output also feeds a second consumer, conv1d-bn, linear-bn."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False, groups=8)
        self.bn2 = nn.BatchNorm2d(8)  # conv2 also feeds the residual: not foldable
        self.conv3 = nn.Conv1d(8, 4, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4 * 16, 6)
        self.bn4 = nn.BatchNorm1d(6)
        self.bn5 = nn.BatchNorm1d(6)  # follows bn4, not a layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        z = self.conv2(y)
        y = self.bn2(z) + z
        y = y.flatten(2)[:, :, :16]  # (N, 8, 16)
        y = torch.relu(self.bn3(self.conv3(y)))
        return self.bn5(self.bn4(self.fc(y.flatten(1))))


def test_fold_fx_matches_original_outputs(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    model = _Net().eval()
    _randomize_bn(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="mpsearch"):
        folded = fold_batchnorm(model, torch.randn(2, 3, 4, 4))
    assert isinstance(folded.bn1, nn.Identity) and isinstance(folded.bn3, nn.Identity)
    assert isinstance(folded.bn4, nn.Identity)
    assert isinstance(folded.bn2, nn.BatchNorm2d) and isinstance(folded.bn5, nn.BatchNorm1d)
    text = caplog.records[-1].getMessage()
    assert "(fx): folded 3" in text and "bn2 (the output of conv2 has 2 consumers)" in text
    assert "bn5 (its input is not a module output)" not in text  # bn5's input is bn4, a module
    assert "bn5" in text
    x = torch.randn(5, 3, 4, 4)
    with torch.no_grad():
        _assert_close(folded(x), model(x))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                      nn.Conv2d(4, 4, 1), nn.ReLU(), nn.BatchNorm2d(4))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.BatchNorm1d(3, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 100:  # data-dependent: fx cannot trace
            x = -x
        return self.head(self.features(x))


def test_fold_sequential_fallback(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(1)
    model = _Untraceable().eval()
    _randomize_bn(model, seed=1)
    with caplog.at_level(logging.INFO, logger="mpsearch"):
        folded = fold_batchnorm(model)
    text = caplog.records[-1].getMessage()
    assert "nn.Sequential fallback" in text and "folded 2" in text
    assert isinstance(folded.features[1], nn.Identity) and isinstance(folded.head[2], nn.Identity)
    assert isinstance(folded.features[5], nn.BatchNorm2d)  # after a ReLU: left alone
    assert "features.5 (" in text
    x = torch.randn(4, 3, 4, 4)
    with torch.no_grad():
        _assert_close(folded(x), model(x))


def test_fold_skips_shared_layer_and_untracked_stats() -> None:
    conv = nn.Conv2d(2, 2, 1)
    bn = nn.BatchNorm2d(2, track_running_stats=False)
    model = nn.Sequential(conv, bn, nn.Sequential(conv, nn.BatchNorm2d(2)))  # conv used twice
    folded = fold_batchnorm(model)
    assert isinstance(folded[1], nn.BatchNorm2d) and isinstance(folded[2][1], nn.BatchNorm2d)
    assert torch.equal(folded[0].weight, conv.weight)


def test_fold_linear_on_3d_output_not_folded_when_inputs_given() -> None:
    class Tok(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(5, 5)
            self.bn = nn.BatchNorm1d(5)  # normalizes dim 1 (tokens), not fc's features

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.fc(x))

    model = Tok().eval()
    folded = fold_batchnorm(model, torch.randn(2, 5, 5))
    assert isinstance(folded.bn, nn.BatchNorm1d)


def test_fold_rejects_non_module() -> None:
    with pytest.raises(UnsupportedModelError, match="fold_batchnorm: model must be a torch.nn.Module.*list"):
        fold_batchnorm([nn.Conv2d(1, 1, 1)])  # type: ignore[arg-type]
