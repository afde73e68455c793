"""Integer kernels against exact references: conv (plain, grouped, depthwise, strided, dilated,
1-d), linear, average-pool rounding and the integer add with two scales."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mpsearch.execution import ir
from mpsearch.execution._builder import Builder, Rep
from mpsearch.execution.kernels import KERNELS
from mpsearch.execution.program import IntegerModel

CPU = torch.device("cpu")


def _conv_ref(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, zp: int, k: int, stride: tuple[int, int],
              pad: tuple[int, int], dilation: tuple[int, int], groups: int) -> torch.Tensor:
    """Exact reference in float64 (all values are small integers, so float64 is exact)."""
    xp = F.pad(x.double() - zp, (pad[1], pad[1], pad[0], pad[0]))  # padding holds real 0 = code zp
    y = F.conv2d(xp, w.double(), None, stride, 0, dilation, groups) * 2**k + bias.double().view(1, -1, 1, 1)
    return y.round().to(torch.int64)


@pytest.mark.parametrize("gemm", ["int32", "int_mm"])
@pytest.mark.parametrize("cin,cout,groups,stride,pad,dil", [
    (3, 5, 1, (1, 1), (1, 1), (1, 1)),
    (4, 6, 2, (2, 1), (0, 1), (1, 1)),
    (6, 6, 6, (1, 1), (1, 1), (1, 1)),   # depthwise
    (6, 12, 6, (2, 2), (2, 2), (2, 2)),  # depthwise x2 multiplier, strided, dilated
])
def test_conv_kernel_exact(gemm: str, cin: int, cout: int, groups: int, stride: tuple[int, int],
                           pad: tuple[int, int], dil: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-128, 128, (2, cin, 7, 6), generator=g, dtype=torch.int8)
    w = torch.randint(-8, 8, (cout, cin // groups, 3, 3), generator=g, dtype=torch.int8)
    bias = torch.randint(-5000, 5000, (cout,), generator=g, dtype=torch.int32)
    zp, k = -37, 3
    op = ir.Conv(name="y", inputs=("x",), weight=w, bias=bias, bias_shift=k, stride=stride,
                 padding=(pad[1], pad[1], pad[0], pad[0]), dilation=dil, groups=groups, input_zp=zp)
    got = KERNELS["conv"](op, CPU, gemm)(x)
    assert got.dtype == torch.int32
    assert torch.equal(got.long(), _conv_ref(x, w, bias, zp, k, stride, pad, dil, groups))


def test_conv1d_and_linear_exact() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(-128, 128, (3, 4, 9), generator=g, dtype=torch.int8)
    w = torch.randint(-128, 128, (5, 4, 1, 3), generator=g, dtype=torch.int8)
    b = torch.randint(-100, 100, (5,), generator=g, dtype=torch.int32)
    op = ir.Conv(name="y", inputs=("x",), weight=w, bias=b, stride=(1, 2), padding=(1, 1, 0, 0), spatial_dims=1,
                 input_zp=5)
    got = KERNELS["conv"](op, CPU, "auto")(x)
    ref = F.conv1d(F.pad(x.double() - 5, (1, 1)), w[:, :, 0].double(), b.double(), stride=2)
    assert torch.equal(got.long(), ref.long())
    xl = torch.randint(-128, 128, (4, 10), generator=g, dtype=torch.int8)
    wl = torch.randint(-128, 128, (3, 10), generator=g, dtype=torch.int8)
    op = ir.Linear(name="y", inputs=("x",), weight=wl, bias=b[:3], input_zp=-3, bias_shift=2)
    for gemm in ("int32", "int_mm"):
        got = KERNELS["linear"](op, CPU, gemm)(xl)
        ref = ((xl.long() + 3) @ wl.long().t()) * 4 + b[:3].long()
        assert torch.equal(got.long(), ref)


def test_avgpool_sum_then_requant_rounds_half_up() -> None:
    # 2x2 windows of codes: sums 10, 5, 6, -6 -> means 2.5, 1.25, 1.5, -1.5 -> half up: 3, 1, 2, -1
    x = torch.tensor([[[[1, 2, 1, 1], [3, 4, 1, 2], [1, 0, -1, -2], [2, 3, -1, -2]]]], dtype=torch.int8)
    t = lambda v: torch.tensor(v, dtype=torch.int32)  # noqa: E731
    ops = (ir.AvgPoolSum(name="s", inputs=("x",), kernel=(2, 2), stride=(2, 2)),
           ir.Requant(name="y", inputs=("s",), zp_in=t(0), multiplier=t(1), shift=t(2), zp_out=t(0), lo=t(-128),
                      hi=t(127), out_dtype="int8"))
    model = IntegerModel((ir.InputQuant("x", "", 1.0, 0, -128, 127, 8, (1, 4, 4)),), ops,
                         ir.OutputSpec("y", 1.0, 0, (1, 2, 2)), {})
    assert model.run(x).reshape(-1).tolist() == [3, 1, 2, -1]


def test_integer_add_with_two_scales() -> None:
    # a: scale 0.5, zp 3; b: scale 0.2, zp 0. Common scale = 0.2 (the finer): a is rescaled by 2.5.
    b = Builder("half_up")
    ra = Rep("a", "int8", (4,), np.float64(0.5), np.int64(3), np.int64(-128), np.int64(127))
    rb = Rep("b", "int8", (4,), np.float64(0.2), np.int64(0), np.int64(-128), np.int64(127))
    ca, cb = b.common_scale([ra, rb], "add")
    assert float(ca.scale) == pytest.approx(0.2) and cb is rb  # b is taken as is
    rq = b.ops[0]
    assert (int(rq.multiplier), int(rq.shift)) == (5, 1)  # 2.5 = 5 / 2^1
    b.emit(ir.Add(name="y", inputs=(ca.value, "b")))
    model = IntegerModel((ir.InputQuant("a", "", 0.5, 3, -128, 127, 8, (4,)),
                          ir.InputQuant("b", "", 0.2, 0, -128, 127, 8, (4,))),
                         tuple(b.ops), ir.OutputSpec("y", 0.2, 0, (4,)), {})
    qa = torch.tensor([[7, 4, 3, -100]], dtype=torch.int8)  # reals 2.0, 0.5, 0.0, -51.5
    qb = torch.tensor([[1, -1, 5, 0]], dtype=torch.int8)  # reals 0.2, -0.2, 1.0, 0.0
    # a at scale 0.2: 10, 2.5 -> 3 (half up), 0, -257.5 -> -257; plus b's codes
    assert model.run(qa, qb).tolist() == [[11, 2, 5, -257]]
