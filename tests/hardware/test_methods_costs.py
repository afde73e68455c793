"""(bits, method) candidates: profiles list methods, sizes count codebooks, omega uses the method's output (#16)."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from mpsearch.core.profile import Capabilities, CostModel, HardwareProfile, Roofline
from mpsearch.core.types import LayerSensitivity, Sensitivity
from mpsearch.errors import ConfigError
from mpsearch.hardware import parse_profile, resource_table
from mpsearch.hardware.methods import NON_UNIFORM_METHODS, method_runs_on
from mpsearch.hardware.schema import profile_to_dict
from mpsearch.model import discover
from mpsearch.quant import weight_spec
from mpsearch.quant.methods import METHODS, make_method
from mpsearch.sensitivity import cost_table
from tests.hardware.conftest import BASE

ALL = ("rtn", "gptq", "kmeans", "log2", "bias_correction")
PROFILE = HardwareProfile(
    name="test-npu",
    capabilities=Capabilities(weight_bits=(2, 4, 8), activation_bits=(8,), weight_granularity=("per_channel",),
                              scale="float", integer_only=False, methods=ALL),
    cost=CostModel(roofline=Roofline(ops_per_s={"w8a8": 1e9}, bytes_per_s=1e9, overhead_ms=0.001)),
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = Net().eval()
    batches = [(torch.randn(16, 2, 4, 4), torch.zeros(16, dtype=torch.long)) for _ in range(2)]
    layers = discover(model, batches[0][0][:1])
    sens = Sensitivity({"conv": LayerSensitivity(trace=3.0, n_params=72),
                        "fc": LayerSensitivity(trace=5.0, n_params=320)}, method="hessian")
    return model, batches, layers, sens


def test_method_lists_agree_with_the_registry():
    assert set(NON_UNIFORM_METHODS) == {n for n, c in METHODS.items() if not c.is_uniform}
    for name, cls in METHODS.items():
        lay = type("L", (), {"kind": "embedding", "groups": 1})()
        assert method_runs_on(name, lay) == ("embedding" in cls.layer_kinds), name
        dw = type("L", (), {"kind": "depthwise_conv2d", "groups": 16})()
        conv = nn.Conv2d(16, 16, 3, groups=16)
        assert method_runs_on(name, dw) == (cls().unsupported_reason(conv) is None), name


def test_profile_methods_parse_round_trip_and_refuse_bad_names():
    assert parse_profile(copy.deepcopy(BASE)).capabilities.methods == ("rtn",)
    assert "methods" not in profile_to_dict(parse_profile(copy.deepcopy(BASE)))["capabilities"]
    data = copy.deepcopy(BASE)
    data["capabilities"]["methods"] = ["rtn", "gptq", "kmeans"]
    p = parse_profile(data)
    assert p.capabilities.methods == ("rtn", "gptq", "kmeans")
    assert parse_profile(profile_to_dict(p)).capabilities.methods == ("rtn", "gptq", "kmeans")
    data["capabilities"]["methods"] = ["rtn", "awq"]
    with pytest.raises(ConfigError, match=r"capabilities.methods\[1\] must be one of rtn, .*gptq.*but got 'awq'"):
        parse_profile(data)
    data["capabilities"]["methods"] = ["rtn", "rtn"]
    with pytest.raises(ConfigError, match="capabilities.methods must be a list without repeats"):
        parse_profile(data)


def test_a_method_the_profile_cannot_run_names_layer_method_and_rule(setup):
    _, _, layers, _ = setup
    p = replace(PROFILE, capabilities=replace(PROFILE.capabilities, methods=("rtn",)))
    with pytest.raises(ConfigError, match=r"layer 'conv' \(conv2d\): method must be one the profile 'test-npu' runs "
                                          r"\(capabilities.methods: rtn\), but got 'gptq'"):
        resource_table(layers, p, [4], [8], methods=["rtn", "gptq"])
    with pytest.raises(ConfigError, match=r"resource_table: method must be one of rtn, .*but got 'magic'"):
        resource_table(layers, PROFILE, [4], [8], methods=["magic"])


def test_resource_sizes_uniform_equal_rtn_and_codebooks_counted(setup):
    _, _, layers, _ = setup
    t = resource_table(layers, PROFILE, [2, 4], [8], methods=["rtn", "gptq", "kmeans"], ties=[])
    conv = t.index_of("conv")
    assert [c.key for c in t.candidates[conv]] == ["w4a8", "w4a8+gptq", "w4a8+kmeans", "w2a8", "w2a8+gptq",
                                                  "w2a8+kmeans"]
    size = t.resources["size_bytes"]
    for name in ("conv", "fc"):
        lay = next(x for x in layers if x.name == name)
        for b in (2, 4):
            rtn = size[t.row_of(name, f"w{b}a8")]
            assert size[t.row_of(name, f"w{b}a8+gptq")] == rtn
            rows = lay.weight_shape[0]
            want = math.ceil((lay.n_weights * b + rows * 2 ** b * 16) / 8) + 4 * (lay.n_params - lay.n_weights)
            assert size[t.row_of(name, f"w{b}a8+kmeans")] == want


def test_cost_table_rtn_rows_unchanged_and_methods_from_their_output(setup):
    model, batches, layers, sens = setup
    plain = cost_table(model, layers, sens, PROFILE, [2, 4], [8], ties=[])
    joint = cost_table(model, layers, sens, PROFILE, [2, 4], [8], ties=[], calib_batches=batches,
                       methods=["rtn", "gptq", "kmeans"])
    mods = dict(model.named_modules())
    with torch.no_grad():
        x_all = {"conv": torch.cat([b[0] for b in batches]),
                 "fc": torch.relu(model.conv(torch.cat([b[0] for b in batches]))).flatten(1)}
    for name in ("conv", "fc"):
        lay = next(x for x in layers if x.name == name)
        m = mods[name]
        ref = m(x_all[name]).detach()
        curv = sens[name].trace / sens[name].n_params
        for b in (2, 4):
            rtn_row = joint.row_of(name, f"w{b}a8")
            assert joint.omega[rtn_row] == plain.omega[plain.row_of(name, f"w{b}a8")]  # activation term is 0 here
            spec = weight_spec(PROFILE.capabilities, b, granularity="per_channel")
            w_rtn = make_method("rtn").quantize_weight(m.weight, spec).weight_dq
            base = float(((torch.func.functional_call(m, {"weight": w_rtn}, (x_all[name],)) - ref).double() ** 2).sum())
            for meth in ("gptq", "kmeans"):
                res = make_method(meth).quantize_weight(m.weight, spec, calib_inputs=x_all[name], layer=m, name=name)
                out = torch.func.functional_call(m, {"weight": res.weight_dq}, (x_all[name],))
                err = float(((out - ref).double() ** 2).sum())
                want = joint.omega[rtn_row] * err / base
                assert joint.omega[joint.row_of(name, f"w{b}a8+{meth}")] == pytest.approx(want, rel=1e-5)
            gptq_row = joint.row_of(name, f"w{b}a8+gptq")
            if name == "fc":  # GPTQ lowers the 64-input layer's output error (the 18-input conv: about a tie)
                assert joint.omega[gptq_row] < joint.omega[rtn_row]
            km = make_method("kmeans").quantize_weight(m.weight, spec)
            want_size = math.ceil((lay.n_weights * b + km.extra_bits) / 8) + 4 * (lay.n_params - lay.n_weights)
            assert joint.resources["size_bytes"][joint.row_of(name, f"w{b}a8+kmeans")] == want_size


def test_data_free_method_without_data_uses_weight_error_and_data_method_refuses(setup):
    model, batches, layers, sens = setup
    t = cost_table(model, layers, sens, PROFILE, [2], [8], ties=[], methods=["rtn", "log2"])
    m = dict(model.named_modules())["fc"]
    spec = weight_spec(PROFILE.capabilities, 2, granularity="per_channel")
    res = make_method("log2").quantize_weight(m.weight, spec)
    want = 5.0 / 320 * float(((res.weight_dq.double() - m.weight.double()) ** 2).sum())
    assert t.omega[t.row_of("fc", "w2a8+log2")] == pytest.approx(want, rel=1e-9)
    with pytest.raises(ConfigError, match=r"layer 'conv' \(w2a8\+gptq\): method 'gptq' needs calibration data "
                                          r".*calib_batches must be given"):
        cost_table(model, layers, sens, PROFILE, [2], [8], methods=["rtn", "gptq"])


def test_codebook_larger_than_a_row_is_left_out(setup):
    _, _, layers, _ = setup
    # conv rows hold 2*3*3 = 18 weights: 4-bit k-means (16 clusters) fits, 8-bit (256) does not; fc rows hold 64
    t = resource_table(layers, PROFILE, [4, 8], [8], methods=["rtn", "kmeans"], ties=[])
    assert [c.key for c in t.candidates[t.index_of("conv")]] == ["w8a8", "w4a8", "w4a8+kmeans"]
    assert [c.key for c in t.candidates[t.index_of("fc")]] == ["w8a8", "w4a8", "w4a8+kmeans"]


def test_check_plan_runs_checks_bits_and_method_apart():
    """A plan with ``w4a8+gptq`` runs where the device runs w4a8 and lists gptq; elsewhere it names the method."""
    import dataclasses

    import torch

    from mpsearch.core.plan import BitPlan, LayerBits
    from mpsearch.demo import get_model
    from mpsearch.hardware import load_profile
    from mpsearch.hardware.plans import check_plan_runs
    from mpsearch.model import discover

    layers = discover(get_model("small_cnn"), torch.zeros(1, 1, 8, 8))
    prof = load_profile("x86-2core-int")
    plan = BitPlan(layers={lay.name: LayerBits(8, 8) for lay in layers})
    first = layers[1].name
    plan.layers[first] = LayerBits(4, 8, method="gptq")
    with pytest.raises(ConfigError) as info:
        check_plan_runs(plan, layers, prof)
    assert str(info.value) == (f"plan: layers.{first} method must be one that profile 'x86-2core-int' runs "
                               "(capabilities.methods: rtn), but got 'gptq'")
    caps = dataclasses.replace(prof.capabilities, methods=("rtn", "gptq"))
    check_plan_runs(plan, layers, dataclasses.replace(prof, capabilities=caps))  # w4a8 runs, gptq listed
