"""Eigenvalues, Fisher, empirical sensitivity and the no-double-backward error."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from mpsearch.errors import UnsupportedModelError
from mpsearch.sensitivity import EigenConfig, EmpiricalConfig, FisherConfig, HessianConfig, analyze
from mpsearch.quant import activation_spec, fake_quantize_minmax, fake_quantize_weight, weight_spec


def test_top_eigenvalue_matches_exact(tiny, exact):
    model, batches, loss_fn, names = tiny
    sens = analyze(model, loss_fn, batches, method="eigen", config=EigenConfig(max_iters=500, rel_tol=1e-9))
    for n in names:
        ev = torch.linalg.eigvalsh(exact[n])
        top = float(ev[ev.abs().argmax()].detach())
        assert sens[n].eigenvalue == pytest.approx(top, rel=1e-3), n
        assert sens.meta["converged"][n]


def _per_example_grads(model, batches, loss_fn, names):
    out = {n: 0.0 for n in names}
    n_total = 0
    for x, y in batches:
        for i in range(len(x)):
            loss = loss_fn(model(x[i:i + 1]), y[i:i + 1])
            grads = torch.autograd.grad(loss, [dict(model.named_modules())[n].weight for n in names])
            for n, g in zip(names, grads):
                out[n] += float((g * g).sum())
            n_total += 1
    return {n: v / n_total for n, v in out.items()}


def test_fisher_per_sample_is_mean_squared_example_gradient(tiny):
    model, batches, loss_fn, names = tiny
    want = _per_example_grads(model, batches, loss_fn, names)
    sens = analyze(model, loss_fn, batches, method="fisher")
    assert sens.meta["computed_by"] == "per_sample"
    for n in names:
        assert sens[n].fisher == pytest.approx(want[n], rel=1e-9)


def test_fisher_per_batch_formula(tiny):
    model, batches, loss_fn, names = tiny
    # batches of one example: per_batch is exactly the per-example Fisher
    ones = [(x[i:i + 1], y[i:i + 1]) for x, y in batches for i in range(len(x))]
    a = analyze(model, loss_fn, ones, method="fisher", config=FisherConfig(granularity="per_batch"))
    want = _per_example_grads(model, batches, loss_fn, names)
    # larger batches: (1/N) sum_b n_b^2 ||grad L_b||^2
    b = analyze(model, loss_fn, batches, method="fisher", config=FisherConfig(granularity="per_batch"))
    for n in names:
        assert a[n].fisher == pytest.approx(want[n], rel=1e-9)
        w = dict(model.named_modules())[n].weight
        hand = sum(len(x) ** 2 * float(torch.autograd.grad(loss_fn(model(x), y), w)[0].pow(2).sum())
                   for x, y in batches) / 23
        assert b[n].fisher == pytest.approx(hand, rel=1e-9)


def test_empirical_is_hand_run_loss_difference(tiny):
    model, batches, loss_fn, names = tiny
    sens = analyze(model, loss_fn, batches, method="empirical", config=EmpiricalConfig(w_bits=(2, 4)))

    def loss():
        with torch.no_grad():
            return sum(float(loss_fn(model(x), y)) * len(x) / 23 for x, y in batches)

    base = loss()
    for n in names:
        mod = dict(model.named_modules())[n]
        saved = mod.weight.detach().clone()
        for b in (2, 4):
            with torch.no_grad():
                mod.weight.copy_(fake_quantize_weight(saved, b, weight_spec(None, b)))
            want = loss() - base
            with torch.no_grad():
                mod.weight.copy_(saved)
            assert sens[n].empirical[f"w{b}"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert loss() == base  # weights restored exactly


def test_empirical_kl_and_activation_keys(tiny):
    model, batches, loss_fn, names = tiny
    sens = analyze(model, loss_fn, batches, method="empirical",
                   config=EmpiricalConfig(w_bits=(4,), a_bits=(8,), metric="kl"))
    for n in names:
        kl = sens[n].empirical["w4a8"]
        assert kl > 0.0  # KL of two different distributions
    mod = model.fc2
    saved = mod.weight.detach().clone()
    # KL by hand for fc2 at w4 with its input at 8 bits
    with torch.no_grad():
        refs = [torch.log_softmax(model(x), -1) for x, _ in batches]
    h = mod.register_forward_pre_hook(lambda _m, a: (fake_quantize_minmax(a[0], activation_spec(None, 8)),))
    try:
        with torch.no_grad():
            mod.weight.copy_(fake_quantize_weight(saved, 4, weight_spec(None, 4)))
            hand = sum(float((r.exp() * (r - torch.log_softmax(model(x), -1))).sum(-1).sum())
                       for (x, _), r in zip(batches, refs)) / 23
    finally:
        h.remove()
        with torch.no_grad():
            mod.weight.copy_(saved)
    assert sens["fc2"].empirical["w4a8"] == pytest.approx(hand, rel=1e-9)


class _StepSquare(torch.autograd.Function):
    """x^2 with a backward marked once-differentiable (no double backward)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class _Act(nn.Module):
    def forward(self, x):
        return _StepSquare.apply(x)


class _NoDoubleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 5)
        self.act = _Act()
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.parametrize("method,config", [
    ("hessian", HessianConfig(min_probes=2, max_probes=2, no_double_backward="error")),
    ("hessian", HessianConfig(min_probes=2, max_probes=2, vmap_probes=False, no_double_backward="error")),
    ("eigen", EigenConfig(max_iters=2))])
def test_no_double_backward_names_module_and_suggests_fisher(method, config):
    torch.manual_seed(0)
    model = _NoDoubleNet()
    batches = [(torch.randn(6, 4), torch.randint(0, 3, (6,)))]
    with pytest.raises(UnsupportedModelError) as info:
        analyze(model, nn.CrossEntropyLoss(), batches, method=method, config=config)
    msg = str(info.value)
    assert "module 'act'" in msg and "_StepSquare" in msg and 'method="fisher"' in msg
    # and the suggested method works on it, equal to the hand-computed squared gradients
    sens = analyze(model, nn.CrossEntropyLoss(), batches, method="fisher")
    x, y = batches[0]
    want = sum(float(torch.autograd.grad(nn.CrossEntropyLoss()(model(x[i:i + 1]), y[i:i + 1]),
                                         model.fc1.weight)[0].pow(2).sum()) for i in range(6)) / 6
    assert sens["fc1"].fisher == pytest.approx(want, rel=1e-6)


def test_hessian_falls_back_to_fisher_for_the_layers_without_double_backward(caplog):
    """fc1's second derivative passes through _StepSquare's once-differentiable backward; fc2's
    does not. By default fc2 keeps its Hessian trace (equal to the run on fc2 alone) and fc1
    gets the Fisher trace, with one WARNING line naming the layer and the op."""
    torch.manual_seed(0)
    model = _NoDoubleNet()
    batches = [(torch.randn(6, 4), torch.randint(0, 3, (6,)))]
    cfg = HessianConfig(min_probes=4, max_probes=4)
    with caplog.at_level("WARNING", logger="mpsearch"):
        sens = analyze(model, nn.CrossEntropyLoss(), batches, method="hessian", config=cfg)
    assert sens.meta["fisher_layers"].keys() == {"fc1"}
    fisher = analyze(model, nn.CrossEntropyLoss(), batches, method="fisher")
    assert sens["fc1"].fisher == pytest.approx(fisher["fc1"].fisher, rel=1e-12) and sens["fc1"].trace is None
    alone = analyze(model, nn.CrossEntropyLoss(), batches, method="hessian", config=cfg, layers=["fc2"])
    assert sens["fc2"].trace == alone["fc2"].trace and sens["fc2"].fisher is None
    lines = [r.getMessage() for r in caplog.records if "empirical Fisher" in r.getMessage()]
    assert len(lines) == 1 and "_StepSquare in module 'act'" in lines[0] and lines[0].endswith(": fc1")
