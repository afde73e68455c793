"""Issue #16: the guard compares a joint (bits, method) plan with the bits-only plan on validation.

A table of two layers whose GPTQ rows are priced far below round-to-nearest (one-layer figures),
so the joint ILP takes GPTQ; the "validation" metric says the bits-only plan is better, so the
guard must return it. Exact plans are worked out by hand in the comments.
"""

from __future__ import annotations

import pytest

from mpsearch import allocate
from mpsearch.core.cost_table import CostTable
from mpsearch.pipeline.guard import bits_only, guard_plan

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
    assert g["split"] == "val" and "bits-only (rtn)" in g["values"]
    returned = g["values"][g["chosen"]]
    assert returned >= g["values"]["bits-only (rtn)"]  # never below bits-only on validation
