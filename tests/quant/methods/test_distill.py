"""ZeroQ distilled data matches the BatchNorm statistics (tolerance stated in the test)."""

import pytest
import torch
from torch import nn

from mpsearch.errors import UnsupportedModelError
from mpsearch.quant.distill import DistillConfig, bn_statistics_error, distill_data


def _bn_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    net.train()
    shift = torch.tensor([0.5, -1.0, 2.0]).reshape(1, 3, 1, 1)
    with torch.no_grad():  # running statistics of a "real" data set unlike N(0, 1)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # cumulative average
        for _ in range(20):
            net(torch.randn(32, 3, 8, 8) * 2.0 + shift)
    return net.eval()


def test_distilled_data_matches_every_bn_within_a_tenth_of_a_running_std():
    net = _bn_net()
    before = bn_statistics_error(net, torch.randn(32, 3, 8, 8))
    x = distill_data(net, 32, (3, 8, 8), DistillConfig(n_iter=300, batch_size=32))
    after = bn_statistics_error(net, x)
    assert x.shape == (32, 3, 8, 8)
    assert max(v["mean_err"] for v in before.values()) > 0.3  # random noise does not match
    for stats in after.values():  # tolerance: means within 0.1 running std, stds within 10%
        assert stats["mean_err"] < 0.1 and stats["std_rel_err"] < 0.1
    assert not net.training and all(p.requires_grad for p in net.parameters())


def test_a_model_without_batchnorm_is_refused_saying_why():
    with pytest.raises(UnsupportedModelError, match="must hold a BatchNorm layer with running statistics"):
        distill_data(nn.Sequential(nn.Linear(4, 4)), 8, (4,))
