"""The integer program agrees with the fake-quant model on the demo models (digits test split)."""

from __future__ import annotations

import pytest
import torch

from mpsearch.core import BitPlan
from mpsearch.demo import batches
from mpsearch.execution import DtypeAudit, IntegerConfig, to_integer, validate
from mpsearch.quant import QuantizeConfig, quantizable_layer_names, quantize


DEMO_NAMES = ("small_cnn", "resnet_tiny", "mobilenet_tiny")
PLANS = ("w8a8", "w4a8", "w4a4", "mixed")


@pytest.fixture(scope="module")
def quantized(demo, mixed_plan):  # type: ignore[no-untyped-def]
    cache = {}

    def _plan(names: list[str], key: str) -> BitPlan:
        if key == "mixed":
            return mixed_plan(names)
        return BitPlan.uniform(names, int(key[1]), int(key[3]))

    def get(name: str, key: str, config: QuantizeConfig | None = None):  # type: ignore[no-untyped-def]
        ckey = (name, key, repr(config))
        if ckey not in cache:
            model, splits = demo(name)
            plan = _plan(quantizable_layer_names(model), key)
            q = quantize(model, plan, batches(splits.train, 256), config=config)
            cache[ckey] = (q, splits)
        return cache[ckey]

    return get


@pytest.mark.parametrize("name", DEMO_NAMES)
@pytest.mark.parametrize("key", PLANS)
def test_agreement_and_accuracy(quantized, name: str, key: str) -> None:  # type: ignore[no-untyped-def]
    q, splits = quantized(name, key)
    imodel = to_integer(q, splits.example_inputs(2))
    report = validate(imodel, q, batches(splits.test, 512), per_layer=key == "mixed", timing_repeats=0)
    assert report.n_images == 359
    assert report.top1_agreement >= 0.995, str(report)
    assert abs(report.accuracy_int - report.accuracy_fake) <= 0.003, str(report)
    if key == "mixed":  # every activation quantizer was compared; input codes are the same integers
        assert report.layers and report.layers[-1].mismatch_fraction == 0.0
        assert {x.name for x in report.layers} == set(imodel.taps)
        assert all(x.mismatch_fraction < 0.01 for x in report.layers), str(report)


@pytest.mark.parametrize("name", DEMO_NAMES)
def test_no_float_op_in_the_integer_path(quantized, name: str) -> None:  # type: ignore[no-untyped-def]
    q, splits = quantized(name, "mixed")
    imodel = to_integer(q, splits.example_inputs(2))
    for op in imodel.ops:  # the program holds integer tensors only
        for field, t in op.tensors().items():
            assert not t.is_floating_point(), (op.name, field, t.dtype)
    codes = imodel.quantize_input(splits.test.tensors[0][:64])
    with DtypeAudit() as audit:
        out = imodel.run(*codes)
    assert len(audit.ops) > len(imodel.ops)  # the audit saw the kernels' aten ops
    assert audit.float_ops == []
    assert out.dtype == torch.int32
    # and the audit does catch a float op
    with DtypeAudit() as audit:
        torch.ones(2) * 2
    assert audit.float_ops


def test_power_of_two_scales_give_pure_shifts(quantized) -> None:  # type: ignore[no-untyped-def]
    q, splits = quantized("resnet_tiny", "w4a8", QuantizeConfig(scale_kind="power_of_two"))
    for rounding in ("half_up", "half_even"):
        imodel = to_integer(q, splits.example_inputs(2), IntegerConfig(rounding=rounding))
        assert imodel.is_pure_shift()
        report = validate(imodel, q, batches(splits.test, 512), per_layer=rounding == "half_even", timing_repeats=0)
        assert report.top1_agreement >= 0.995
    # with the simulation's rounding (half to even) the power-of-two program reproduces its codes
    assert max(x.mismatch_fraction for x in report.layers) < 0.01, str(report)
    q_dyadic, _ = quantized("resnet_tiny", "w4a8")
    assert not to_integer(q_dyadic, splits.example_inputs(2)).is_pure_shift()
