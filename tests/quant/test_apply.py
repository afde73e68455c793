"""quantize(): the simulated-quant copy, its graph, calibration and errors.

The model is conv + BN + ReLU, a depthwise conv, a residual add and a linear head; ``y``
(the first ReLU output) feeds conv2, conv4 and the skip path.
"""

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mpsearch.core import BitPlan, HardwareProfile, LayerBits
from mpsearch.core.profile import Capabilities
from mpsearch.errors import ConfigError, UnknownNameError, UnsupportedModelError
from mpsearch.model import fold_batchnorm
from mpsearch.quant import QuantConv2d, QuantizeConfig, fake_quantize, quant_mode, quantizable_layer_names, quantize

NAMES = ["conv1", "conv2", "conv3", "conv4", "fc"]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # depthwise
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 8, 1)
        self.conv4 = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        z = F.relu(self.bn2(self.conv2(y)))
        z = self.conv3(z) + y + self.conv4(y)
        return self.fc(z.mean((2, 3)))


def make_net():
    torch.manual_seed(0)
    net = Net()
    for bn in (net.bn1, net.bn2):  # non-trivial statistics so that folding matters
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    calib = [torch.randn(4, 3, 8, 8, generator=g) for _ in range(3)]
    test = torch.randn(16, 3, 8, 8, generator=g)
    return calib, test


def _fq(module, t):
    return fake_quantize(t, module.scale, module.zero_point, module.spec)


def _reference(qm, x):
    """The fake-quant forward written out by hand from the quantized model's parameters."""
    aq = qm.act_quant
    w = {n: qm.get_submodule(n).quantized_weight() for n in NAMES}
    b = {n: qm.get_submodule(n).bias for n in NAMES}
    y = F.relu(F.conv2d(_fq(aq["x"], x), w["conv1"], b["conv1"], padding=1))
    yq = _fq(aq["relu"], y)
    z = F.relu(F.conv2d(yq, w["conv2"], b["conv2"], padding=1, groups=8))
    y4 = _fq(aq["relu__conv4"], yq) if "relu__conv4" in aq else yq
    z = F.conv2d(_fq(aq["relu_1"], z), w["conv3"], b["conv3"]) + yq + F.conv2d(y4, w["conv4"], b["conv4"])
    return F.linear(_fq(aq["mean"], z.mean((2, 3))), w["fc"], b["fc"])


def test_quantizable_layer_names():
    assert quantizable_layer_names(make_net()) == NAMES


def test_original_model_is_untouched(data):
    calib, test = data
    net = make_net().train()
    before = copy.deepcopy(net.state_dict())
    out_before = net.eval()(test)
    net.train()
    qm = quantize(net, BitPlan.uniform(NAMES, 4, 4), calib)
    assert net.training and isinstance(net.bn1, nn.BatchNorm2d) and type(net.conv1) is nn.Conv2d
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()) and before.keys() == net.state_dict().keys()
    assert torch.equal(net.eval()(test), out_before)
    assert not qm.training and qm.quant_mode == "graph" and quant_mode(copy.deepcopy(qm)) == "graph"
    assert quant_mode(net) == "none"


def test_graph_quantizes_tensors_once_and_skip_path_reads_them(data):
    calib, test = data
    plan = BitPlan(layers={"conv1": LayerBits(8, 8), "conv2": LayerBits(4, 8), "conv4": LayerBits(8, 4),
                           "fc": LayerBits(8, 8)})  # conv3 stays float
    qm = quantize(make_net(), plan, calib)
    nodes = {n.name: n for n in qm.graph.nodes}
    shared = nodes["act_quant_relu"]
    assert shared.target == "act_quant.relu" and shared.args[0].name == "relu"
    # Every reader of y reads the quantized value: conv2, conv4 (through its 4-bit requant) and the add.
    assert nodes["conv2"].args[0] is shared
    requant = nodes["conv4"].args[0]
    assert requant.target == "act_quant.relu__conv4" and requant.args[0] is shared
    add = next(n for n in qm.graph.nodes if n.op == "call_function" and shared in n.args)
    assert add.name.startswith("add")
    assert [u.name for u in nodes["relu"].users] == ["act_quant_relu"]
    # The model input is quantized too; conv3 is float and its input is not quantized.
    assert nodes["conv1"].args[0].target == "act_quant.x"
    assert nodes["conv3"].args[0].name == "relu_1" and type(qm.conv3) is nn.Conv2d
    assert qm.act_quant["relu"].bits == 8 and qm.act_quant["relu__conv4"].bits == 4
    assert sorted(qm.act_quant) == ["mean", "relu", "relu__conv4", "x"]
    assert qm.act_quant["relu"].consumers == ["conv2"] and qm.act_quant["relu__conv4"].consumers == ["conv4"]
    assert {n: qm.get_submodule(n).input_quant_name for n in plan} == {
        "conv1": "act_quant.x", "conv2": "act_quant.relu", "conv4": "act_quant.relu__conv4", "fc": "act_quant.mean"}
    assert (qm.conv2.w_bits, qm.conv2.a_bits, qm.conv4.a_bits) == (4, 8, 4)


@pytest.mark.parametrize("w_bits, a_bits", [(8, 8), (4, 4)])
def test_forward_equals_hand_written_fake_quant_graph(data, w_bits, a_bits):
    calib, test = data
    qm = quantize(make_net(), BitPlan.uniform(NAMES, w_bits, a_bits), calib)
    assert torch.allclose(qm(test), _reference(qm, test), rtol=0, atol=1e-6)


def test_bn_folded_before_weight_quantization(data):
    calib, _ = data
    net = make_net()
    folded = fold_batchnorm(net)
    qm = quantize(net, BitPlan.uniform(NAMES, 8, 8), calib)
    assert isinstance(qm.bn1, nn.Identity) and isinstance(qm.conv1, QuantConv2d)
    assert torch.equal(qm.conv1.weight, folded.conv1.weight) and torch.equal(qm.conv2.bias, folded.conv2.bias)
    amax = folded.conv1.weight.detach().abs().amax((1, 2, 3))
    assert torch.allclose(qm.conv1.weight_quant.scale, amax / 127.5)  # symmetric full range on the FOLDED weight


@pytest.mark.parametrize("bits", [2, 4])
def test_weights_take_at_most_2_pow_b_values_per_channel(data, bits):
    calib, _ = data
    qm = quantize(make_net(), BitPlan.uniform(NAMES, bits, 8), calib)
    for name in NAMES:
        layer = qm.get_submodule(name)
        wq = layer.quantized_weight().detach().reshape(layer.weight.shape[0], -1)
        codes = wq / layer.weight_quant.scale.reshape(-1, 1)  # symmetric: zero point 0
        assert torch.allclose(codes, codes.round(), atol=1e-4)
        assert codes.round().min() >= -(2 ** (bits - 1)) and codes.round().max() <= 2 ** (bits - 1) - 1
        assert max(len(torch.unique(row)) for row in wq) <= 2**bits


def test_w8a8_close_to_float_and_w4a4_further(data):
    """Bound 5% relative L2 error of the logits for W8A8. Why: an 8-bit quantizer adds rounding
    noise of std S / sqrt(12) with S ~ range / 255; for these roughly Gaussian tensors
    range / rms ~ 6-8, i.e. ~0.8% relative noise per quantizer; 4 activation + 5 weight
    quantizers in series add in quadrature to ~2.5%, so 5% leaves a 2x margin (measured 0.4%;
    W4A4 7%)."""
    calib, test = data
    net = make_net()
    ref = net(test)

    def rel(q):
        return ((q(test) - ref).norm() / ref.norm()).item()

    e8 = rel(quantize(net, BitPlan.uniform(NAMES, 8, 8), calib))
    e4 = rel(quantize(net, BitPlan.uniform(NAMES, 4, 4), calib))
    assert 0 < e8 < 0.05 and e4 > 4 * e8


def test_calibration_batch_forms_and_cap(data):
    calib, test = data
    plan = BitPlan.uniform(NAMES, 8, 8)
    a = quantize(make_net(), plan, calib)
    b = quantize(make_net(), plan, [(x, torch.zeros(4)) for x in calib] + [(torch.full((1, 3, 8, 8), 99.0), 0)],
                 config=QuantizeConfig(n_calib_batches=3))  # the 4th batch (huge values) is beyond the cap
    assert torch.equal(a.act_quant["x"].scale, b.act_quant["x"].scale)
    assert torch.equal(a(test), b(test))


def test_profile_sets_granularity_and_power_of_two_scales(data):
    calib, _ = data
    prof = HardwareProfile(name="p2", capabilities=Capabilities(weight_granularity=("per_tensor",),
                                                                scale="power_of_two"))
    qm = quantize(make_net(), BitPlan.uniform(NAMES, 8, 8), calib, profile=prof)
    scales = [qm.get_submodule(n).weight_quant.scale for n in NAMES] + [m.scale for m in qm.act_quant.values()]
    assert all(s.shape == () for s in scales)
    assert all(torch.frexp(s)[0].item() == 0.5 for s in scales)


def test_dynamic_activation_ranges_need_no_data(data):
    _, test = data
    qm = quantize(make_net(), BitPlan.uniform(NAMES, 8, 8), None, config=QuantizeConfig(activation_range="dynamic"))
    assert all(m.mode == "dynamic" for m in qm.act_quant.values())
    x = test[:2]
    xq = qm.act_quant["x"](x)
    lo, hi = min(x.min().item(), 0), max(x.max().item(), 0)
    assert (xq - x).abs().max().item() <= (hi - lo) / 255 / 2 + 1e-6


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = F.relu(self.conv(x))
        if y.sum() > 0:
            y = y + x.mean(1, keepdim=True)
        return self.fc(y.mean((2, 3)))


def test_fallback_quantizes_each_layer_input(data, caplog):
    calib, test = data
    net = Branchy().eval()
    with caplog.at_level(logging.INFO, logger="mpsearch"):
        qm = quantize(net, BitPlan.uniform(["conv", "fc"], 8, 8), calib)
    assert qm.quant_mode == "per_layer" and quant_mode(qm) == "per_layer"
    assert any("per-layer mode" in r.getMessage() and "skip paths" in r.getMessage() for r in caplog.records)
    assert qm.conv.input_quant_name == "conv.input_quant" and qm.conv.input_quant.mode == "quantize"
    x = test[:2]
    y = F.relu(F.conv2d(_fq(qm.conv.input_quant, x), qm.conv.quantized_weight(), qm.conv.bias, padding=1))
    y = y + x.mean(1, keepdim=True)  # the skip path reads the float x
    ref = F.linear(_fq(qm.fc.input_quant, y.mean((2, 3))), qm.fc.quantized_weight(), qm.fc.bias)
    assert torch.allclose(qm(x), ref, rtol=0, atol=1e-6)


def test_errors_name_the_problem(data):
    calib, _ = data
    net = make_net()
    with pytest.raises(UnsupportedModelError, match="model must be a torch.nn.Module, but got builtins.dict"):
        quantize({}, BitPlan.uniform(NAMES, 8, 8), calib)
    with pytest.raises(UnknownNameError, match=r"unknown quantizable layer .*'conv9'.*Valid: conv1, conv2, conv3"):
        quantize(net, BitPlan.uniform(["conv1", "conv9"], 8, 8), calib)
    with pytest.raises(UnknownNameError, match=r"'bn1'.*Valid: conv1"):
        quantize(net, BitPlan.uniform(["bn1"], 8, 8), calib)
    with pytest.raises(ConfigError, match="w_bits must be an integer in 2..8 or 16, but got 1"):
        quantize(net, BitPlan.uniform(NAMES, 1, 8), calib)
    for empty in ([], None, iter(())):
        with pytest.raises(ConfigError, match="calib_batches must hold at least one batch"):
            quantize(net, BitPlan.uniform(NAMES, 8, 8), empty)
    with pytest.raises(ConfigError, match=r"calib_batches\[0\] must be a tensor or an \(inputs, labels\)"):
        quantize(net, BitPlan.uniform(NAMES, 8, 8), [{"x": calib[0]}])
    with pytest.raises(ConfigError, match="QuantizeConfig: activation_range must be one of static, dynamic"):
        QuantizeConfig(activation_range="live")
    with pytest.raises(UnknownNameError, match="unknown calibrator 'entropy'"):
        QuantizeConfig(activation_calibrator="entropy")
    with pytest.raises(ConfigError, match="quantize: layer 'conv1': QuantSpec: group_size must be a divisor of the 27 elements per channel"):
        quantize(net, BitPlan.uniform(NAMES, 8, 8), calib,
                 config=QuantizeConfig(weight_granularity="per_group", group_size=4))


class WithUnusedHead(Net):
    def __init__(self):
        super().__init__()
        self.head2 = nn.Linear(8, 2)  # never called by forward


def test_plan_layer_never_called_is_refused(data):
    calib, _ = data
    with pytest.raises(ConfigError, match="plan layer 'head2' must be called as a module"):
        quantize(WithUnusedHead().eval(), BitPlan.uniform(["conv1", "head2"], 8, 8), calib)


@pytest.mark.parametrize("calibrator", ["percentile", "mse", "kl"])
def test_other_activation_calibrators_run_and_stay_close(data, calibrator):
    calib, test = data
    net = make_net()
    cfg = QuantizeConfig(activation_calibrator=calibrator,
                         activation_calibrator_options={"kl": {"n_bins": 256}, "mse": {"n_grid": 20}}.get(calibrator, {}))
    qm = quantize(net, BitPlan.uniform(NAMES, 8, 8), calib, config=cfg)
    assert qm.act_quant["relu"].calibrator_name == calibrator
    ref = net(test)
    assert ((qm(test) - ref).norm() / ref.norm()).item() < 0.1
