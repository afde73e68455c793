"""trace_estimator="auto": curvature sites give exact block traces where the network is piecewise
linear in a layer, unbiased per-example samples elsewhere, and Hutchinson where they cannot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import exact_block
from mpsearch.errors import ConfigError
from mpsearch.sensitivity import HessianConfig, analyze
from mpsearch.sensitivity.graph_sites import OpTracer

AUTO = HessianConfig(trace_estimator="auto", rel_stderr_target=0.02, max_probes=3000)


class ConvRes(nn.Module):
    """conv-BN(eval)-ReLU, a residual conv, a grouped conv, max-pool, flatten, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn(self.c1(x)))
        y = F.relu(self.c2(y) + y)
        y = self.dw(y) + y
        return self.fc(self.pool(y).flatten(1))


def _traces(model, batches, loss_fn, names):
    return {n: float(exact_block(model, batches, loss_fn, n).trace()) for n in names}


def _layers(model):
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


@pytest.fixture()
def convres():
    torch.manual_seed(0)
    model = ConvRes().double().eval()
    model.bn.running_mean.normal_()
    model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(12, 1, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (12,))
    return model, [(x[:8], y[:8]), (x[8:], y[8:])]


def test_piecewise_linear_conv_net_block_traces_are_exact(convres):
    model, batches = convres
    names = _layers(model)
    want = _traces(model, batches, nn.CrossEntropyLoss(), names)
    sens = analyze(model, nn.CrossEntropyLoss(), batches, config=AUTO, layers=names)
    assert sens.meta["site_layers"] == names and sens.meta["probed_layers"] == {}
    for n in names:
        assert sens[n].trace == pytest.approx(want[n], rel=1e-5)
        assert sens[n].trace_stderr == 0.0
        assert sens[n].n_probes == 2 * 3  # 3 classes x 2 batches, one backward vector each
    assert sens.meta["hvp_calls"] == 0


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(), nn.MSELoss()], ids=["ce", "mse"])
def test_relu_mlp_and_tanh_right_after_a_layer_are_exact(loss_fn):
    torch.manual_seed(1)
    relu = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.LeakyReLU(0.1), nn.Linear(6, 4)).double()
    tanh = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 4)).double()
    x = torch.randn(10, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (10,)) if isinstance(loss_fn, nn.CrossEntropyLoss) else torch.randn(10, 4, dtype=torch.float64)
    for model in (relu, tanh):
        names = _layers(model)
        want = _traces(model, [(x, y)], loss_fn, names)
        sens = analyze(model, loss_fn, [(x, y)], config=AUTO, layers=names)
        for n in names:
            # the tanh of layer 0 is a site right after it: its Rademacher sample is exact (xi^2 = 1)
            assert sens[n].trace == pytest.approx(want[n], rel=1e-5)
            assert sens[n].trace_stderr <= 1e-12 * abs(want[n])  # zero up to rounding


def test_sampled_sites_are_unbiased_within_their_error(tiny, exact):
    model, batches, loss_fn, names = tiny  # conv -> tanh -> fc1 -> tanh -> fc2
    sens = analyze(model, loss_fn, batches, config=AUTO, layers=names)
    for n in ("fc1", "fc2"):  # only sites right after them or the loss: exact
        assert sens[n].trace == pytest.approx(float(exact[n].trace()), rel=1e-5)
    conv = sens["conv"]
    assert 0 < conv.trace_stderr <= 0.02 * abs(conv.trace)
    assert abs(conv.trace - float(exact["conv"].trace())) <= 4 * conv.trace_stderr


def test_tied_weights_are_probed_and_the_rest_stays_exact():
    torch.manual_seed(2)

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.b.weight = self.a.weight
            self.out = nn.Linear(4, 3)

        def forward(self, x):
            return self.out(F.relu(self.b(F.relu(self.a(x)))))

    model = Tied().double()
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    sens = analyze(model, nn.CrossEntropyLoss(), [(x, y)], config=AUTO, layers=["a", "b", "out"])
    assert set(sens.meta["probed_layers"]) == {"a", "b"}
    assert "tied" in sens.meta["probed_layers"]["a"]
    want = _traces(model, [(x, y)], nn.CrossEntropyLoss(), ["out", "a"])
    assert sens["out"].trace == pytest.approx(want["out"], rel=1e-5) and sens["out"].trace_stderr == 0.0
    assert abs(sens["a"].trace - want["a"]) <= 4 * sens["a"].trace_stderr  # Hutchinson on the tied block


def test_layer_norm_blocks_the_site_method_and_every_layer_is_probed():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 3)).double()
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    sens = analyze(model, nn.CrossEntropyLoss(), [(x, y)], config=AUTO)
    assert "layer_norm" in sens.meta["site_blocker"]
    assert set(sens.meta["probed_layers"]) == {"0", "2"} and sens.meta["hvp_calls"] > 0


def _blocker(fn, x):
    tracer = OpTracer(x.shape[0], [])
    with tracer:
        fn(x)
    return tracer.trace.blocker


@pytest.mark.parametrize("fn, why", [
    (lambda x: x.sum(), "dim 0 is not the examples"),
    (lambda x: x.t(), "moves dim 0"),
    (lambda x: x[torch.tensor([1, 0, 2, 3])], "selects examples"),
    (lambda x: x.mean(0), "along dim 0"),
    (lambda x: torch.cat([x, x]), "along dim 0"),
    (lambda x: x.clone().relu_(), "in-place"),
    (lambda x: F.batch_norm(x, None, None, training=True), "training mode"),
    (lambda x: x * x, "two activations"),
    (lambda x: F.layer_norm(x, (4,)), "dense second derivative"),
    (lambda x: torch.erf(x), "no rule"),
])
def test_tracer_blocks_ops_that_mix_examples_or_have_no_rule(fn, why):
    x = torch.randn(4, 4, requires_grad=True)
    assert why in _blocker(fn, x)


def test_tracer_accepts_per_example_ops():
    x = torch.randn(4, 2, 3, requires_grad=True)
    assert _blocker(lambda t: torch.tanh(t.transpose(1, 2).reshape(4, 6)).mean(1) + t[:, 0].sum(-1), x) is None


def test_trace_estimator_is_checked_and_in_the_cache_key(tmp_path, tiny):
    with pytest.raises(ConfigError, match="trace_estimator"):
        HessianConfig(trace_estimator="exact")
    from mpsearch.sensitivity import cache

    model, batches, loss_fn, names = tiny
    keys = {cache.cache_key(model, loss_fn, batches, "hessian", HessianConfig(trace_estimator=e), names)
            for e in ("auto", "hutchinson")}
    assert len(keys) == 2
