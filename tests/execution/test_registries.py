"""The rooms for new op families and kernel backends: every op kind has a generic kernel, the
handler and kernel tables merge without clashes, backends resolve by name and device, and a
backend registered the documented way runs its own GEMM with the integers of the int32 kernels."""

from __future__ import annotations

import operator

import pytest
import torch
from torch import nn

from mpsearch.errors import ConfigError
from mpsearch.execution import _steps, ir, kernels, ops
from mpsearch.execution.kernels import BACKENDS, FUSED, GEMMS, GENERIC, KERNELS, resolve_gemm
from mpsearch.execution.kernels.gemm import Int32Backend, Int32Gemm
from mpsearch.quant.modules import ActQuant, QuantConv2d

CPU = torch.device("cpu")


def test_every_op_kind_has_a_generic_kernel() -> None:
    assert set(GENERIC) == set(ir.OPS) == set(KERNELS)
    assert set(FUSED) == {("conv", "requant"), ("linear", "requant")}


def test_backends_by_name_and_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GEMMS == ("auto", "int_mm", "int32", "numba", "int_mm_fused")
    assert resolve_gemm("auto", torch.device("cuda")) == "int_mm"
    assert resolve_gemm("numba", torch.device("cuda")) == "int32"  # numba runs on CPU only
    assert resolve_gemm("int_mm", CPU) == "int_mm"
    assert resolve_gemm("auto", torch.device("meta")) == "int32"
    monkeypatch.setattr(kernels.intmm_cpu, "cpu_has_int8_dot", lambda: True)
    assert resolve_gemm("auto", CPU) == "int_mm_fused"  # a CPU with VNNI / AMX
    monkeypatch.setattr(kernels.intmm_cpu, "cpu_has_int8_dot", lambda: False)
    assert resolve_gemm("auto", CPU) == "numba" and resolve_gemm("int_mm_fused", CPU) == "int32"
    monkeypatch.setattr(kernels._numba_jit, "available", lambda: False)
    assert resolve_gemm("auto", CPU) == resolve_gemm("numba", CPU) == "int32"
    with pytest.raises(ConfigError, match="gemm must be one of auto, int_mm, int32, numba, int_mm_fused, but got"):
        resolve_gemm("int4", CPU)


def test_handler_tables_merge_the_families() -> None:
    assert ops.FUNCTION_HANDLERS[operator.add] is ops.elementwise.add
    assert ops.METHOD_HANDLERS["view"] is ops.shape.reshape
    assert ops.FUNCTION_HANDLERS[torch.mean] is ops.pooling.mean
    kinds = [cls for cls, _ in ops.MODULE_HANDLERS]
    assert kinds[:4] == [ActQuant, QuantConv2d, ops.layers.QuantConv1d, ops.layers.QuantLinear]
    assert nn.AdaptiveAvgPool2d in kinds and nn.Flatten in kinds and len(set(kinds)) == len(kinds)
    for family in ops.FAMILIES:  # every family's tables are in the merged ones
        assert set(family.FUNCTIONS) <= set(ops.FUNCTION_HANDLERS)
        assert set(family.METHODS) <= set(ops.METHOD_HANDLERS)


class _CountingGemm(Int32Gemm):
    calls = 0

    def __call__(self, cols: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        return super().__call__(cols)


class _CountingBackend(Int32Backend):
    """A new backend as kernels/_base.py says to write one: a name, and what it runs its own way."""

    name = "counting"

    def gemm(self, w_kn: torch.Tensor, corr: torch.Tensor, shift: int) -> _CountingGemm:
        return _CountingGemm(w_kn, corr, shift)


def test_a_registered_backend_runs_its_gemm_with_the_same_integers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "counting", _CountingBackend())
    g = torch.Generator().manual_seed(0)
    conv = ir.Conv(name="acc", inputs=("x",), weight=torch.randint(-8, 8, (5, 3, 3, 3), generator=g, dtype=torch.int8),
                   bias=torch.randint(-999, 999, (5,), generator=g, dtype=torch.int32), bias_shift=2,
                   padding=(1, 1, 1, 1), input_zp=-3)
    lin = ir.Linear(name="y", inputs=("flat",), weight=torch.randint(-8, 8, (4, 5 * 36), generator=g, dtype=torch.int8),
                    bias=torch.zeros(4, dtype=torch.int32), input_zp=0)
    rq = ir.Requant(name="codes", inputs=("acc",), zp_in=torch.tensor(0, dtype=torch.int32),
                    multiplier=torch.tensor(3, dtype=torch.int32), shift=torch.tensor(9, dtype=torch.int32),
                    zp_out=torch.tensor(0, dtype=torch.int32), lo=torch.tensor(-128, dtype=torch.int32),
                    hi=torch.tensor(127, dtype=torch.int32))
    program = [conv, rq, ir.Reshape(name="flat", inputs=("codes",), shape=(5 * 36,)), lin]
    x = torch.randint(-128, 128, (2, 3, 6, 6), generator=g, dtype=torch.int8)

    def run(gemm: str) -> torch.Tensor:
        env = {"x": x}
        for step in _steps.plan_steps(program, CPU, gemm, output="y"):
            env[step.output] = step.kernel(*(env[n] for n in step.inputs))
        return env["y"]

    want = run("int32")
    assert torch.equal(run("counting"), want) and _CountingGemm.calls == 2  # the conv's and the linear's
