"""Issue #16: the guard compares a joint (bits, method) plan with the bits-only plan on validation.

A table of two layers whose GPTQ rows are priced far below round-to-nearest (one-layer figures),
so the joint ILP takes GPTQ; the "validation" metric says the bits-only plan is better, so the
guard must return it. Exact plans are worked out by hand in the comments.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mpsearch import allocate
from mpsearch.core.cost_table import CostTable
from mpsearch.pipeline import guard
from mpsearch.pipeline.guard import BITS_ONLY, bits_only, guard_plan, methods_test, sign_test_p
from mpsearch.pipeline.task import CLASSIFICATION

# size: 2 bytes at w2, 4 at w4 (method does not change the size); budget 6 -> one layer at each width
OMEGA = {("a", 2, "rtn"): 10.0, ("a", 4, "rtn"): 1.0, ("b", 2, "rtn"): 5.0, ("b", 4, "rtn"): 1.0,
         ("a", 2, "gptq"): 2.0, ("a", 4, "gptq"): 0.5, ("b", 2, "gptq"): 4.0, ("b", 4, "gptq"): 0.5}


def _table(methods=("rtn", "gptq")) -> CostTable:
    recs = [{"layer": n, "w_bits": w, "a_bits": 8, "method": m, "omega": o, "size_bytes": float(w)}
            for (n, w, m), o in OMEGA.items() if m in methods]
    return CostTable.from_records(recs)


def test_bits_only_is_the_rtn_allocation():
    joint = _table()
    # bits only: a w4 + b w2 = 1 + 5 = 6 < a w2 + b w4 = 10 + 1 = 11
    plan = bits_only(joint, {"size_bytes": 6})["bits-only (rtn)"]
    assert {n: lb.key for n, lb in plan.layers.items()} == {"a": "w4a8", "b": "w2a8"}
    assert plan.objective == 6.0
    assert bits_only(_table(("rtn",)), {"size_bytes": 6}) == {}  # no methods: nothing to add


def test_guard_returns_bits_only_when_it_is_better_on_validation():
    joint = _table()
    mixed = allocate(joint, {"size_bytes": 6})
    # joint: a w2+gptq + b w4+gptq = 2.5 < a w4+gptq + b w2+gptq = 4.5
    assert {n: lb.key for n, lb in mixed.layers.items()} == {"a": "w2a8+gptq", "b": "w4a8+gptq"}

    def val_top1(plan) -> float:  # the bits-only plan is the best on "validation"
        keys = tuple(plan.layers[n].key for n in ("a", "b"))
        return {("w4a8", "w2a8"): 0.90, ("w2a8+gptq", "w4a8+gptq"): 0.80}.get(keys, 0.50)

    out = guard_plan(mixed, joint, {"size_bytes": 6}, val_top1, higher_is_better=True,
                     extra=bits_only(joint, {"size_bytes": 6}))
    g = out.meta["guard"]
    assert g["chosen"] == "bits-only (rtn)" and g["changed"] is True
    assert g["values"]["bits-only (rtn)"] == 0.90 and g["values"]["mixed"] == 0.80
    assert {n: lb.key for n, lb in out.layers.items()} == {"a": "w4a8", "b": "w2a8"}


def test_guard_keeps_the_joint_plan_when_it_is_better():
    joint = _table()
    mixed = allocate(joint, {"size_bytes": 6})

    def val_top1(plan) -> float:
        return 0.95 if plan.layers["a"].method == "gptq" else 0.90

    out = guard_plan(mixed, joint, {"size_bytes": 6}, val_top1, higher_is_better=True,
                     extra=bits_only(joint, {"size_bytes": 6}))
    assert out.meta["guard"]["chosen"] == "mixed" and out.meta["guard"]["values"]["bits-only (rtn)"] == 0.90
    assert {n: lb.key for n, lb in out.layers.items()} == {"a": "w2a8+gptq", "b": "w4a8+gptq"}


@pytest.mark.slow
def test_a_recipe_with_methods_guards_the_joint_plan_against_bits_only(tmp_path):
    """hardware.methods in a recipe: the guard's values include the bits-only (rtn) plan, on the val split."""
    import copy

    import yaml

    from mpsearch import load_profile
    from mpsearch.hardware.schema import profile_to_dict
    from mpsearch.pipeline import run_recipe
    from mpsearch.recipe import recipe_from_dict
    from tests.recipe.test_guard_recipe import RECIPE

    prof = profile_to_dict(load_profile("gap8-pulp-nn"))
    prof["capabilities"]["methods"] = ["rtn", "gptq"]
    path = tmp_path / "gap8-gptq.yaml"
    path.write_text(yaml.safe_dump(prof))
    data = copy.deepcopy(RECIPE)
    data["hardware"] = {**data["hardware"], "profile": str(path), "methods": ["rtn", "gptq"]}
    data["output"] = {"dir": str(tmp_path / "out")}
    result = run_recipe(recipe_from_dict(data))
    g = result.plan.meta["guard"]
    t = g["methods_test"]  # the joint plan against bits-only, example by example on the val split
    assert g["split"] == "val" and t["n_examples"] == 359
    assert t["p_value"] == sign_test_p(t["wins"], t["losses"]) and t["wins"] + t["losses"] <= 359
    if t["kept"] == "mixed":
        assert t["wins"] > t["losses"] and t["p_value"] < 0.05
        assert g["values"][g["chosen"]] >= g["values"][BITS_ONLY]  # never below bits-only on validation
    else:  # the bits-only plan was guarded: no layer takes GPTQ
        assert all(lb.method == "rtn" for lb in result.plan.layers.values())


def test_sign_test_p_by_hand():
    # two-sided exact binomial(n, 1/2) tail, doubled: McNemar's exact test on the discordant counts
    assert sign_test_p(6, 1) == pytest.approx(2 * (7 + 1) / 2 ** 7)  # 0.125
    assert sign_test_p(1, 6) == pytest.approx(0.125)
    assert sign_test_p(5, 0) == pytest.approx(2 / 2 ** 5)  # 0.0625: five against none is not enough at 0.05
    assert sign_test_p(8, 0) == pytest.approx(2 / 2 ** 8)  # 0.0078
    assert sign_test_p(10, 2) == pytest.approx(2 * (66 + 12 + 1) / 2 ** 12)  # 0.0386
    assert sign_test_p(3, 3) == 1.0 and sign_test_p(0, 0) == 1.0


# 20 validation examples, all of class 1; bits-only gets the first 12 right
_BITS = [1] * 12 + [0] * 8
_JOINT_6_1 = [0] + [1] * 11 + [1] * 6 + [0] * 2  # 6 wins (12-17), 1 loss (0): 17/20 against 12/20
_JOINT_8_0 = [1] * 20  # 8 wins, no loss


def _scores(by_keys):
    return lambda plan: [float(v) for v in by_keys[tuple(plan.layers[n].key for n in ("a", "b"))]]


def test_methods_test_needs_a_significant_lead():
    joint = _table()
    mixed = allocate(joint, {"size_bytes": 6})
    simple = bits_only(joint, {"size_bytes": 6})[BITS_ONLY]
    keys_j, keys_b = ("w2a8+gptq", "w4a8+gptq"), ("w4a8", "w2a8")
    # 85 % against 60 % on validation, but 6 against 1 discordant examples: p = 0.125, bits-only stays
    t = methods_test(mixed, simple, _scores({keys_j: _JOINT_6_1, keys_b: _BITS}))
    assert (t["wins"], t["losses"], t["kept"]) == (6, 1, BITS_ONLY) and t["p_value"] == pytest.approx(0.125)
    t = methods_test(mixed, simple, _scores({keys_j: _JOINT_8_0, keys_b: _BITS}))  # p = 2 / 256
    assert (t["wins"], t["losses"], t["kept"]) == (8, 0, "mixed") and t["p_value"] == pytest.approx(0.0078125)
    t = methods_test(mixed, simple, _scores({keys_j: _JOINT_6_1, keys_b: _BITS}), alpha=0.2)  # a looser level
    assert t["kept"] == "mixed"
    with pytest.raises(ValueError, match="same examples"):
        methods_test(mixed, simple, lambda p: [1.0] * (20 if p is mixed else 19))


class _Fixed:
    """A "model" whose top-1 on the 20 validation examples is given (logits for classes 0 and 1)."""

    def __init__(self, correct):
        self.correct = correct

    def __call__(self, x):
        c = torch.tensor(self.correct, dtype=torch.float32)
        return torch.stack([1 - c, c], dim=1)


@pytest.mark.parametrize("joint_correct, kept, keys", [
    (_JOINT_6_1, BITS_ONLY, {"a": "w4a8", "b": "w2a8"}),  # the lead is not significant: bits-only, guarded
    (_JOINT_8_0, "mixed", {"a": "w2a8+gptq", "b": "w4a8+gptq"}),
])
def test_guard_step_tests_the_joint_plan_against_bits_only(monkeypatch, joint_correct, kept, keys):
    from mpsearch.pipeline import steps
    from mpsearch.sensitivity import calibrate

    by_keys = {("w2a8+gptq", "w4a8+gptq"): joint_correct, ("w4a8", "w2a8"): _BITS}
    monkeypatch.setattr(steps, "quantize_plan", lambda prep, p: _Fixed(
        by_keys.get(tuple(p.layers[n].key for n in ("a", "b")), [0] * 20)))  # any other plan: all wrong
    monkeypatch.setattr(steps, "metric", lambda prep, m, batches: sum(m.correct) / 20)
    monkeypatch.setattr(calibrate, "weight_error_table", lambda *a: None)
    monkeypatch.setattr(guard, "greedy_plan", lambda *a: None)
    val = [(torch.zeros(20, 1), torch.ones(20, dtype=torch.long))]
    prep = SimpleNamespace(inputs=SimpleNamespace(val=val, model=None, task=CLASSIFICATION),
                           budgets={"size_bytes": 6}, profile=SimpleNamespace(rules=None),
                           recipe=SimpleNamespace(allocation=SimpleNamespace(solver="cbc", gap_rel=None)))
    joint = _table()
    out = guard.guard_step(prep, joint, allocate(joint, {"size_bytes": 6}))
    g = out.meta["guard"]
    assert g["methods_test"]["kept"] == kept and {n: lb.key for n, lb in out.layers.items()} == keys
    assert g["chosen"] == "mixed"  # the plan the test kept beats uniform w2a8 (0 / 20) on validation
    assert g["values"]["mixed"] == sum(joint_correct if kept == "mixed" else _BITS) / 20
    assert g["values"]["uniform w2a8"] == 0.0
    assert g["reason"].startswith(f"on 20 validation examples the joint plan scored higher on {6 if kept == BITS_ONLY else 8}")
