"""Omega of LLM formats: the format's own quantized weight (groups, zero points); no activation term
for weight-only; per-token activation error for W8A8 per-token."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mpsearch as mps
from mpsearch.core.types import LayerSensitivity, Sensitivity

PROFILE = mps.load_profile("x86-2core-int")


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


def _groups_error(w: torch.Tensor, bits: int, group: int, zero_point: bool) -> float:
    """||Q(W) - W||^2 with one min-max range per group of ``group`` inputs, written out group by group."""
    total = 0.0
    for row in w.double():
        for g in row.split(group):
            lo, hi = min(float(g.min()), 0.0), max(float(g.max()), 0.0)
            if zero_point:  # asymmetric: S = (hi - lo) / (2^b - 1), zp = qmin - round(lo / S)
                s = (hi - lo) / (2**bits - 1)
                zp = -(2 ** (bits - 1)) - round(lo / s)
            else:  # symmetric full range: S = 2 amax / (2^b - 1)
                s, zp = 2 * max(-lo, hi) / (2**bits - 1), 0
            s = float(torch.tensor(s, dtype=torch.float32))  # scales are float32
            for v in g.tolist():
                code = min(max(round(float(torch.tensor(v, dtype=torch.float32) / torch.tensor(s))) + zp,
                               -(2 ** (bits - 1))), 2 ** (bits - 1) - 1)
                total += ((code - zp) * s - v) ** 2
    return total


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = _Net().eval()
    x = torch.randn(3, 4, 64)
    batches = [(x, torch.zeros(3, 4, 16))]
    layers = mps.discover(model, x)
    sens = Sensitivity(layers={n: LayerSensitivity(trace=2.0 * layers_n, n_params=layers_n, activation_trace=5.0,
                                                   activation_numel=4 * d_in)
                               for n, layers_n, d_in in (("fc1", 64 * 32, 64), ("fc2", 32 * 16, 32))},
                       method="hessian")
    return model, batches, layers, sens


def test_omega_uses_the_formats_weight(setup) -> None:
    model, batches, layers, sens = setup
    fmts = ["w4a16g32", "w4a16g32z", "w8a16", "w16a16"]
    t = mps.cost_table(model, layers, sens, PROFILE, formats=fmts, calib_batches=batches)
    w = model.fc1.weight.detach()
    # mean trace 2.0; weight-only: no activation term although traces and batches are given
    assert t.omega[t.row_of("fc1", "w4a16g32")] == pytest.approx(2.0 * _groups_error(w, 4, 32, False), rel=1e-6)
    assert t.omega[t.row_of("fc1", "w4a16g32z")] == pytest.approx(2.0 * _groups_error(w, 4, 32, True), rel=1e-6)
    assert t.omega[t.row_of("fc1", "w8a16")] == pytest.approx(2.0 * _groups_error(w, 8, 64, False), rel=1e-6)
    # zero points fit the groups better than the symmetric grid on these weights
    assert t.omega[t.row_of("fc1", "w4a16g32z")] < t.omega[t.row_of("fc1", "w4a16g32")]
    assert 0 < t.omega[t.row_of("fc1", "w16a16")] < 1e-7


def test_per_token_activation_term(setup) -> None:
    model, batches, layers, sens = setup
    t = mps.cost_table(model, layers, sens, PROFILE, formats=["w8a8t", "w8a16"], calib_batches=batches)
    x = batches[0][0]
    h = F.relu(model.fc1(x)).detach()  # fc2's input, [3, 4, 32]
    w = model.fc2.weight.detach()
    # per token (row of 32), asymmetric (the profile's activation mode), 8 bits
    lo = torch.minimum(h.amin(-1, keepdim=True), torch.zeros(1))
    hi = torch.maximum(h.amax(-1, keepdim=True), torch.zeros(1))
    s = (hi - lo) / 255
    s = torch.where(s > 0, s, torch.ones_like(s))
    zp = torch.clamp(-128 - torch.round(lo / s), -128, 127)
    q = (torch.clamp(torch.round(h / s) + zp, -128, 127) - zp) * s
    act_err = float(((q.double() - h.double()) ** 2).sum()) / 3  # per example
    w_err = _groups_error(w, 8, 32, False)
    want = 2.0 * w_err + 5.0 / (4 * 32) * act_err
    assert t.omega[t.row_of("fc2", "w8a8t")] == pytest.approx(want, rel=1e-6)
    assert t.omega[t.row_of("fc2", "w8a16")] == pytest.approx(2.0 * w_err, rel=1e-6)
