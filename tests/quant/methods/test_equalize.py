"""Cross-layer equalisation keeps the float function and equalises ranges."""

import torch
from torch import nn

from mpsearch.quant.equalize import equalize_, find_pairs
from mpsearch.quant.quantizer import fake_quantize_weight


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # depthwise
        self.c3 = nn.Conv2d(8, 6, 1)
        self.fc = nn.Linear(6 * 4 * 4, 10)
        with torch.no_grad():  # badly balanced channels, as BN folding leaves them
            self.c1.weight.mul_(torch.logspace(-2, 1, 8).reshape(8, 1, 1, 1))

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = nn.functional.relu(self.c2(x))
        x = self.c3(x)  # no ReLU: c3 -> fc is not a pair
        return self.fc(x.flatten(1))


def test_cle_finds_relu_pairs_and_leaves_the_float_output_unchanged():
    torch.manual_seed(0)
    net = _Net().double()
    x = torch.randn(4, 3, 4, 4, dtype=torch.double)
    before = net(x)
    assert find_pairs(net) == [("c1", "c2"), ("c2", "c3")]
    equalize_(net, n_iter=3)
    assert torch.allclose(net(x), before, atol=1e-5, rtol=0)
    assert float((net(x) - before).abs().max()) < 1e-10  # float64: exact up to rounding


def test_cle_lowers_per_tensor_quantization_error_of_the_first_layer():
    torch.manual_seed(0)
    net = _Net()
    w = net.c1.weight.detach().clone()
    def mean_channel_rel_error(w):  # channel i's error relative to its own norm, averaged
        d = (fake_quantize_weight(w, 4, "per_tensor") - w).reshape(8, -1).norm(dim=1)
        return float((d / w.reshape(8, -1).norm(dim=1)).mean())

    rel_before = mean_channel_rel_error(w)
    equalize_(net, pairs=[("c1", "c2")])
    w = net.c1.weight.detach().clone()
    r = w.reshape(8, -1).abs().amax(1)
    r2 = net.c2.weight.detach().reshape(8, -1).abs().amax(1)
    assert torch.allclose(r, r2, rtol=1e-5)  # both ranges are sqrt(r1 r2)
    rel_after = mean_channel_rel_error(w)
    assert rel_after < 0.7 * rel_before  # measured: 0.432 vs 0.689
