"""With power-of-two scales the integer bias is rounded to odd, so the requant after a layer gives
the exact single rounding of the real value even where that value lies a hair beside a midpoint
of the next quantizer's grid (round to nearest put the bias exactly on the midpoint there)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from mpsearch.core import BitPlan
from mpsearch.execution import IntegerConfig, to_integer
from mpsearch.execution.ops.layers import round_bias
from mpsearch.quant import QuantizeConfig, quantizable_layer_names, quantize


def test_round_bias() -> None:
    v = np.array([2.0, 2.25, 2.5, 2.75, 3.0, 3.5, -2.5, -2.25, -3.0])
    assert round_bias(v, to_odd=False).tolist() == [2, 2, 2, 3, 3, 4, -2, -2, -3]  # nearest, ties to even
    assert round_bias(v, to_odd=True).tolist() == [2, 3, 3, 3, 3, 3, -3, -3, -3]  # exact ones kept, else odd


class _TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.relu, self.fc2 = nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))


@pytest.mark.parametrize("rounding", ["half_up", "half_even"])
@pytest.mark.parametrize("t", [2, 3])  # the real value lies just below t + 1/2 codes
def test_power_of_two_program_rounds_like_the_exact_value(rounding: str, t: int) -> None:
    torch.manual_seed(0)
    model = _TwoLayers().eval()
    x = torch.linspace(-1, 1, 16).reshape(16, 1)
    q = quantize(model, BitPlan.uniform(quantizable_layer_names(model), 8, 8), [x],
                 config=QuantizeConfig(scale_kind="power_of_two"))
    fc1, aq_x, aq = q.get_submodule("fc1"), q.get_submodule("act_quant.x"), q.get_submodule("act_quant.relu")
    with torch.no_grad():  # scales of one power of two each, so that float32 can hold the hair below
        fc1.weight_quant.scale.fill_(1.0)
        aq_x.scale.fill_(2.0**-3)
        aq.scale.fill_(2.0**-4)
        fc1.weight.zero_()  # the real value is the bias alone, and the bias gets all 16 extra bits
        grid = 2.0**-3 / 2**16  # the bias grid S_w * S_a / 2^16, in real units
        fc1.bias.fill_((t + 0.5) * 2.0**-4 - grid / 8)  # a hair below a midpoint, under half the grid
    b = Fraction(float(fc1.bias.detach())) / Fraction(2.0**-4)  # in codes
    mid = Fraction(2 * t + 1, 2)
    assert mid - Fraction(grid / 2.0**-4) / 2 < b < mid  # float32 kept the hair; nearest lands on mid
    imodel = to_integer(q, x[:2], IntegerConfig(rounding=rounding))
    _, kept = imodel.run(*imodel.quantize_input(x), keep=[imodel.taps["act_quant.relu"]])
    codes = kept[imodel.taps["act_quant.relu"]].reshape(-1)
    assert codes.tolist() == [t + int(aq.zero_point)] * 16  # round(b / S) = t, the exact single rounding
