"""Hutchinson traces against the exact Hessian of tiny models."""

from __future__ import annotations

import math

import pytest
import torch

from mpsearch.errors import ConfigError, UnknownNameError
from mpsearch.sensitivity import HessianConfig, analyze
from mpsearch.sensitivity.probes import SampleStats, converged, probe_seed, rademacher


def test_trace_within_5_percent_at_convergence(tiny, exact):
    model, batches, loss_fn, names = tiny
    cfg = HessianConfig(rel_stderr_target=0.015, max_probes=4000, probes_per_batch=32, vmap_probes=True)
    sens = analyze(model, loss_fn, batches, config=cfg)
    for n in names:
        true = float(exact[n].trace())
        rec = sens[n]
        assert sens.meta["converged"][n]
        assert rec.n_params == exact[n].shape[0]
        assert rec.trace_stderr <= 0.015 * abs(rec.trace) + 1e-12
        assert abs(rec.trace - true) <= 0.05 * abs(true), (n, rec.trace, true)


@pytest.mark.parametrize("control_rank", [0, 8])
def test_stderr_is_honest_over_seeds(tiny, exact, control_rank):
    """|estimate - exact| <= 3 stderr in (nearly) every seeded run; about 68% within 1 stderr.

    With the control variate the first round (8 probes) is raw and later rounds corrected.
    """
    model, batches, loss_fn, names = tiny
    within3 = within1 = total = 0
    for seed in range(30):
        cfg = HessianConfig(min_probes=24, max_probes=24, probes_per_batch=8, vmap_probes=True, seed=seed,
                            control_rank=control_rank)
        sens = analyze(model, loss_fn, batches, config=cfg)
        for n in names:
            err = abs(sens[n].trace - float(exact[n].trace()))
            within3 += err <= 3 * sens[n].trace_stderr
            within1 += err <= sens[n].trace_stderr
            total += 1
    assert within3 / total >= 0.95
    assert 0.5 <= within1 / total <= 0.9  # 1-sigma coverage near 68% (t with 23 dof)


def test_samples_are_v_H_v_of_dataset_mean_loss(tiny, exact):
    """Every sample equals v^T H v for the seeded probe, with H weighted by batch size."""
    model, batches, loss_fn, names = tiny
    cfg = HessianConfig(min_probes=4, max_probes=4, probes_per_batch=4, strategy="blockwise", control_rank=0)
    sens = analyze(model, loss_fn, batches, config=cfg)
    for l, n in enumerate(names):
        h = exact[n]
        vs = [rademacher((h.shape[0],), probe_seed(0, i, l), torch.device("cpu"), torch.float64) for i in range(4)]
        want = sum(float(v @ h @ v) for v in vs) / 4
        assert sens[n].trace == pytest.approx(want, rel=1e-9, abs=1e-12)
    # an unweighted mean of batch means would weight the 3-example batch like the others
    model2_loss = sum(loss_fn(model(x), y) for x, y in batches) / 3
    weighted = sum(loss_fn(model(x), y) * len(x) / 23 for x, y in batches)
    assert abs(float(model2_loss.detach()) - float(weighted.detach())) > 1e-3


@pytest.mark.parametrize("strategy,vmap", [("per_layer", False), ("blockwise", True), ("shared", True)])
def test_strategies_agree_with_exact(tiny, exact, strategy, vmap):
    model, batches, loss_fn, names = tiny
    cfg = HessianConfig(min_probes=64, max_probes=64, probes_per_batch=32, strategy=strategy, vmap_probes=vmap, seed=3)
    sens = analyze(model, loss_fn, batches, config=cfg)
    for n in names:
        # 1e-12 relative: float64 round-off. Where every probe gives the same v^T H v the stderr
        # is ~1e-17 and the last bits depend on the CPU's summation order (AVX-512 vs AVX2).
        exact_trace = float(exact[n].trace())
        assert abs(sens[n].trace - exact_trace) <= 4 * sens[n].trace_stderr + 1e-12 * abs(exact_trace)
    assert sens.meta["strategy"] == strategy


def test_per_layer_blockwise_and_vmap_give_identical_samples(tiny):
    model, batches, loss_fn, names = tiny
    base = dict(min_probes=8, max_probes=8, probes_per_batch=4, seed=5)
    a = analyze(model, loss_fn, batches, config=HessianConfig(strategy="per_layer", **base))
    b = analyze(model, loss_fn, batches, config=HessianConfig(strategy="blockwise", vmap_probes=True, **base))
    for n in names:
        assert a[n].trace == pytest.approx(b[n].trace, rel=1e-10)
        assert a[n].trace_stderr == pytest.approx(b[n].trace_stderr, rel=1e-8)


def test_shared_cross_terms_cancel_only_in_expectation(tiny, exact):
    """The shared HVP adds v_l^T H_lm v_m to layer l; check one sample by hand."""
    model, batches, loss_fn, names = tiny
    cfg = HessianConfig(min_probes=2, max_probes=2, probes_per_batch=1, strategy="shared", drop_converged=False,
                        control_rank=0)
    sens = analyze(model, loss_fn, batches, config=cfg)
    # full Hessian over the three weights
    ws = [dict(model.named_modules())[n].weight.detach().clone() for n in names]
    total = sum(len(x) for x, _ in batches)

    def f(*w):
        params = {f"{n}.weight": t for n, t in zip(names, w)}
        return sum(loss_fn(torch.func.functional_call(model, params, (x,), strict=False), y) * len(x) / total
                   for x, y in batches)

    full = torch.autograd.functional.hessian(f, tuple(ws))
    for l, n in enumerate(names):
        want = 0.0
        for i in range(2):
            v = [rademacher(w.shape, probe_seed(0, i, m), torch.device("cpu"), torch.float64) for m, w in enumerate(ws)]
            want += sum(float(v[l].flatten() @ full[l][m].reshape(v[l].numel(), v[m].numel()) @ v[m].flatten())
                        for m in range(3)) / 2
        assert sens[n].trace == pytest.approx(want, rel=1e-9)


def test_activation_trace_per_example(tiny):
    model, batches, loss_fn, names = tiny
    cfg = HessianConfig(activations=True, rel_stderr_target=0.02, max_probes=3000, probes_per_batch=32,
                        vmap_probes=True, strategy="blockwise")
    sens = analyze(model, loss_fn, batches, config=cfg)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    # exact: mean over examples of tr(d2 loss_i / d a_i^2), a_i = the layer's input
    conv, fc1, fc2 = model.conv, model.fc1, model.fc2
    heads = {
        "conv": lambda a: fc2(torch.tanh(fc1(torch.tanh(conv(a)).flatten(1)))),
        "fc1": lambda a: fc2(torch.tanh(fc1(a))),
        "fc2": lambda a: fc2(a),
    }
    with torch.no_grad():
        inputs = {"conv": x, "fc1": torch.tanh(conv(x)).flatten(1)}
        inputs["fc2"] = torch.tanh(fc1(inputs["fc1"]))
    for n in names:
        traces = []
        for i in range(len(x)):
            a = inputs[n][i:i + 1]
            h = torch.autograd.functional.hessian(lambda t: loss_fn(heads[n](t), y[i:i + 1]), a)
            traces.append(float(h.reshape(a.numel(), a.numel()).trace()))
        true = sum(traces) / len(traces)
        rec = sens[n]
        assert rec.activation_numel == inputs[n][0].numel()
        assert abs(rec.activation_trace - true) <= max(4 * rec.activation_trace_stderr, 1e-9), (n, rec.activation_trace, true)
        assert abs(rec.activation_trace - true) <= 0.07 * abs(true) + 1e-9


def test_stopping_uses_stderr_of_samples_not_change_of_mean():
    s = SampleStats()
    # a running mean that barely moves between the last two probes, yet a huge spread:
    s.add([10.0, -10.0, 10.0, -10.0, 10.0, -10.0, 0.1, 0.1])
    assert not converged(s, 0.05, floor=0.0, min_probes=2)
    assert s.stderr == pytest.approx(torch.tensor(s.samples).std().item() / math.sqrt(8))
    t = SampleStats()
    t.add([1.0, 1.01, 0.99, 1.0])
    assert converged(t, 0.05, floor=0.0, min_probes=4)
    assert not converged(t, 0.05, floor=0.0, min_probes=5)


def test_mean_near_zero_stops_on_floor_or_cap(tiny):
    """An indefinite block with trace ~0 cannot reach a relative target; the floor/cap end it."""
    model, batches, loss_fn, _ = tiny
    cfg = HessianConfig(rel_stderr_target=1e-4, min_probes=4, max_probes=12, probes_per_batch=4)
    sens = analyze(model, loss_fn, batches, config=cfg)
    assert all(sens[n].n_probes == 12 for n in sens)
    assert not any(sens.meta["converged"].values())


def test_config_and_name_errors(tiny):
    model, batches, loss_fn, _ = tiny
    with pytest.raises(ConfigError, match="strategy must be one of shared, blockwise, per_layer, but got 'fast'"):
        HessianConfig(strategy="fast")
    with pytest.raises(ConfigError, match="max_probes must be >= min_probes"):
        HessianConfig(min_probes=10, max_probes=5)
    with pytest.raises(UnknownNameError, match="did you mean 'hessian'"):
        analyze(model, loss_fn, batches, method="hesian")
    with pytest.raises(ConfigError, match="config must be a EigenConfig"):
        analyze(model, loss_fn, batches, method="eigen", config=HessianConfig())
    with pytest.raises(ConfigError, match="batches must hold at least one batch"):
        analyze(model, loss_fn, [])
    with pytest.raises(UnknownNameError, match="unknown module 'fc9'"):
        analyze(model, loss_fn, batches, layers=["fc9"])


def test_model_state_restored(tiny):
    model, batches, loss_fn, _ = tiny
    model.train()
    model.fc1.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        analyze(model, loss_fn, batches, config=HessianConfig(min_probes=2, max_probes=2, probes_per_batch=2))
        assert model.training and not model.fc1.weight.requires_grad
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k])
    finally:
        model.fc1.weight.requires_grad_(True)
        model.eval()


def test_control_variate_samples_by_hand(tiny, exact):
    """After a pilot round, samples are v^T H v - v^T A v + tr(A), A the pilot's Nystrom approximation."""
    model, batches, loss_fn, names = tiny
    cfg = HessianConfig(min_probes=4, max_probes=4, probes_per_batch=4, control_rank=4, seed=2)
    sens = analyze(model, loss_fn, batches, config=cfg)
    for l, n in enumerate(names):
        h = exact[n]
        v = [rademacher((h.shape[0],), probe_seed(2, i, l), torch.device("cpu"), torch.float64) for i in range(8)]
        s = torch.stack(v[:4])  # the pilot
        y = s @ h
        a = y.T @ torch.linalg.pinv(s @ y.T, hermitian=True) @ y
        corrected = [float(x @ h @ x - x @ a @ x + a.trace()) for x in v[4:]]
        assert sens[n].n_probes == 4
        assert sens[n].trace == pytest.approx(sum(corrected) / 4, rel=1e-6)
    # fc2 (18 weights): rank 4 holds its top directions, so the corrected samples spread less
    h = exact["fc2"]
    raw = [float(x @ h @ x) for x in
           (rademacher((18,), probe_seed(2, i, 2), torch.device("cpu"), torch.float64) for i in range(4, 8))]
    assert sens["fc2"].trace_stderr < torch.tensor(raw).std().item() / 2
