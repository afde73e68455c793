"""Issue #21: measured omega where the second-order model breaks, and the guard on every plan.

A tiny classifier whose middle layer has one outlier weight per output channel: per-channel 2-bit
rounding sends every other weight of that layer to 0, which is catastrophic. The cost table's
2-bit figure for that layer is made 1000x too small (the quadratic model underpricing a large
perturbation), so the ILP takes it; calibration and the guard must both catch it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mpsearch as mps
from mpsearch.allocation import uniform_plan
from mpsearch.allocation.greedy import greedy_plan
from mpsearch.core.profile import Capabilities, CostModel, HardwareProfile, Roofline
from mpsearch.pipeline.guard import guard_plan
from mpsearch.quant import fake_quantize_weight, weight_spec
from mpsearch.sensitivity import HessianConfig
from mpsearch.sensitivity.calibrate import CalibrationConfig, calibrate_omega, weight_error_table

PROFILE = HardwareProfile(
    name="test-npu",
    capabilities=Capabilities(weight_bits=(2, 4, 8), activation_bits=(8,), weight_mode="symmetric",
                              weight_granularity=("per_channel",), activation_mode="asymmetric", scale="float"),
    cost=CostModel(roofline=Roofline(ops_per_s={"w8a8": 1e9}, bytes_per_s=1e9, overhead_ms=0.001)),
)


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    with torch.no_grad():
        # one outlier per output channel: 2-bit per-channel rounding sends the rest to 0
        model[2].weight[:, 0] = torch.sign(model[2].weight[:, 0]) * 3.0
        model[4].weight *= 20.0  # confident logits: a low float loss
    model.eval()
    x = torch.randn(600, 8)
    with torch.no_grad():
        y = model(x).argmax(1)  # the model is its own teacher: float accuracy 100%
    train = [(x[i:i + 100], y[i:i + 100]) for i in range(0, 300, 100)]
    val = [(x[300:450], y[300:450])]
    layers = mps.discover(model, (x[:2],))
    loss_fn = nn.CrossEntropyLoss()
    sens = mps.analyze(model, loss_fn, train[:2], config=HessianConfig(max_probes=32, seed=0))
    table = mps.cost_table(model, layers, sens, PROFILE, w_bits=[2, 4, 8], a_bits=[8], ties=[])
    broken = table.omega.copy()
    row = table.row_of("2", 2, 8)
    broken[row] /= 1000.0  # the second-order model underprices 2-bit rounding of layer "2"
    from dataclasses import replace

    bad = replace(table, omega=broken)

    def score(plan):  # validation loss of the fake-quant model (lower is better)
        q = mps.quantize(model, plan, train, profile=PROFILE)
        with torch.no_grad():
            return float(loss_fn(q(val[0][0]), val[0][1]))

    return model, train, val, loss_fn, table, bad, row, score


def test_calibration_measures_the_broken_figure(setup):
    model, train, _, loss_fn, table, bad, row, _ = setup
    cal = calibrate_omega(model, bad, loss_fn, train, PROFILE, CalibrationConfig(factor=2.0, max_w_bits=2))
    # the measured loss increase, by hand: layer "2" alone at 2 bits with its input at 8 bits
    w = model[2].weight.detach().clone()
    spec = weight_spec(PROFILE.capabilities, 2, granularity="per_channel")
    from mpsearch.quant.quantizer import fake_quantize_minmax
    from mpsearch.quant.spec import activation_spec

    a_spec = activation_spec(PROFILE.capabilities, 8)
    h = model[2].register_forward_pre_hook(lambda _m, a: (fake_quantize_minmax(a[0], a_spec),))
    try:
        with torch.no_grad():
            model[2].weight.copy_(fake_quantize_weight(w, 2, spec))
            n = sum(len(b[0]) for b in train)
            q = sum(float(loss_fn(model(xb), yb)) * len(xb) / n for xb, yb in train)
            model[2].weight.copy_(w)
    finally:
        h.remove()
    with torch.no_grad():
        base = sum(float(loss_fn(model(xb), yb)) * len(xb) / n for xb, yb in train)
    assert q - base > 1.5 * base  # catastrophic: the loss nearly triples
    assert cal.sources["omega"][row] == "measured"
    assert cal.omega[row] == pytest.approx(q - base, rel=1e-6)
    # only 2-bit candidates were measured (max_w_bits=2), one per layer; the rest stay predicted
    measured = {table.candidates[table.index_of(n)][j].key for n in table.layers for j in range(3)
                if cal.sources["omega"][int(table.offsets[table.index_of(n)]) + j] != "predicted"}
    assert measured == {"w2a8"}
    assert list(cal.omega[[r for r in range(table.n_rows) if cal.sources["omega"][r] == "predicted"]]) == \
        list(bad.omega[[r for r in range(table.n_rows) if cal.sources["omega"][r] == "predicted"]])


def test_guard_never_returns_a_plan_worse_than_uniform(setup):
    model, train, val, _, table, bad, row, score = setup
    u4 = uniform_plan(bad, 4, 8)[0]
    budgets = {"size_bytes": u4.totals["size_bytes"]}
    plan = mps.allocate(bad, budgets)
    assert plan.layers["2"].w_bits == 2  # the broken figure lures the ILP into 2 bits
    unguarded = score(plan)
    greedy = greedy_plan(weight_error_table(model, bad, PROFILE), budgets)
    guarded = guard_plan(plan, bad, budgets, score, higher_is_better=False, greedy=greedy)
    g = guarded.meta["guard"]
    assert score(guarded) <= score(u4) < unguarded  # never worse than uniform; the unguarded plan is
    assert g["changed"] is True and g["values"]["mixed"] == unguarded
    assert g["values"]["uniform w4a8"] == score(u4)
    assert "2:w2a8" in g["removed"] and guarded.layers["2"].w_bits >= 4
    assert "scored" in g["reason"] and g["split"] == "val"
    assert guarded.totals["size_bytes"] <= budgets["size_bytes"]


def test_guard_keeps_a_plan_that_beats_the_baselines(setup):
    model, _, _, _, table, _, _, score = setup
    u4 = uniform_plan(table, 4, 8)[0]
    budgets = {"size_bytes": u4.totals["size_bytes"]}
    plan = mps.allocate(table, budgets)
    out = guard_plan(plan, table, budgets, score, higher_is_better=False)
    assert out.meta["guard"]["changed"] is (out.layers != plan.layers)
    assert score(out) <= min(v for k, v in out.meta["guard"]["values"].items() if k.startswith("uniform"))


def test_greedy_meets_the_budget_and_steps_down_the_roundest_layers(setup):
    model, _, _, _, table, _, _, _ = setup
    err = weight_error_table(model, table, PROFILE)
    u4 = uniform_plan(table, 4, 8)[0]
    plan = greedy_plan(err, {"size_bytes": u4.totals["size_bytes"]})
    assert plan.totals["size_bytes"] <= u4.totals["size_bytes"]
    # brute force over the 27 assignments: greedy is feasible and no worse than all-4-bit in MSE
    assert err.totals(err.rows_for_plan(plan))["omega"] <= err.totals(err.rows_for_plan(u4))["omega"] + 1e-12
    assert greedy_plan(err, {"size_bytes": 1.0}) is None


def test_a_tie_on_the_metric_is_broken_by_the_validation_loss(setup):
    """A metric too coarse to tell the plans apart (every plan scores 1.0, as accuracy does when all
    plans get the same validation images right): the loss decides, and the metadata says so."""
    model, _, _, _, table, bad, _, score = setup
    u4 = uniform_plan(bad, 4, 8)[0]
    budgets = {"size_bytes": u4.totals["size_bytes"]}
    plan = mps.allocate(bad, budgets)
    coarse = lambda p: 1.0  # noqa: E731
    kept = guard_plan(plan, bad, budgets, coarse, higher_is_better=True)
    assert kept.meta["guard"]["changed"] is False and kept.meta["guard"]["decided_by"] == "metric"
    assert kept.layers == plan.layers  # without a tie-break a tie keeps the plan (the old behaviour)
    out = guard_plan(plan, bad, budgets, coarse, higher_is_better=True, tiebreak=score)
    g = out.meta["guard"]
    assert g["decided_by"] == "loss (tie on the metric)" and g["changed"] is True
    assert g["losses"]["mixed"] == score(plan)
    assert g["losses"]["uniform w4a8"] == score(u4) < score(plan)  # the 2-bit layer costs loss, not accuracy
    # by hand: the returned plan's loss is the smallest of the baselines and the re-allocated plan
    baselines = {k: v for k, v in g["losses"].items() if k != "mixed"}
    assert g["losses"][g["chosen"]] == min(baselines.values())  # here the re-allocated plan is all-4-bit
    assert g["losses"]["uniform w2a8"] > g["losses"]["uniform w4a8"]  # the baselines' own tie, on loss
    assert score(out) == pytest.approx(min(baselines.values()), rel=1e-12)
    assert "lower val loss" in g["reason"] and out.layers["2"].w_bits >= 4


def test_a_strict_metric_difference_is_not_overruled_by_the_loss(setup):
    model, _, _, _, table, bad, _, score = setup
    u4 = uniform_plan(bad, 4, 8)[0]
    budgets = {"size_bytes": u4.totals["size_bytes"]}
    plan = mps.allocate(bad, budgets)
    # the mixed plan is better on the metric, worse on the loss: the metric decides, no loss computed
    metric = lambda p: 0.9 if p.layers == plan.layers else 0.8  # noqa: E731
    out = guard_plan(plan, bad, budgets, metric, higher_is_better=True, tiebreak=score)
    g = out.meta["guard"]
    assert g["changed"] is False and g["decided_by"] == "metric" and out.layers == plan.layers
    # the baselines all score 0.8: their tie is broken on loss, but the mixed plan wins on the metric
    assert "mixed" not in g.get("losses", {})


def test_a_tie_margin_makes_a_one_example_difference_a_tie(setup):
    """Accuracy on 100 images: the mixed plan is one image ahead (0.91 vs 0.90). With a margin of one
    image (0.01) that is a tie and the loss decides; with no margin the metric keeps the plan."""
    model, _, _, _, table, bad, _, score = setup
    u4 = uniform_plan(bad, 4, 8)[0]
    budgets = {"size_bytes": u4.totals["size_bytes"]}
    plan = mps.allocate(bad, budgets)
    metric = lambda p: 0.91 if p.layers == plan.layers else 0.90  # noqa: E731
    strict = guard_plan(plan, bad, budgets, metric, higher_is_better=True, tiebreak=score)
    assert strict.meta["guard"]["changed"] is False and strict.meta["guard"]["decided_by"] == "metric"
    out = guard_plan(plan, bad, budgets, metric, higher_is_better=True, tiebreak=score, tie_margin=0.01)
    g = out.meta["guard"]
    assert g["changed"] is True and g["decided_by"] == "loss (tie on the metric)" and g["tie_margin"] == 0.01
    assert g["losses"]["uniform w4a8"] == score(u4) < g["losses"]["mixed"] == score(plan)
    assert out.layers["2"].w_bits >= 4 and "margin 0.01" in g["reason"]
