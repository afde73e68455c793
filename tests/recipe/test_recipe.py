"""Recipes load strictly and stop bad input before heavy work, naming file, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mpsearch.errors import ConfigError, InfeasibleBudgetError, MpsearchError, UnknownNameError
from mpsearch.recipe import load_recipe, parse_uniform

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, data: dict, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def _base() -> dict:
    return yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_load_and_check(path: Path) -> None:
    r = load_recipe(path)
    assert r.name == yaml.safe_load(path.read_text()).get("name", path.stem)
    assert r.results_dir == Path(r.output_dir) / r.name


def test_demo_recipe_values() -> None:
    r = load_recipe(ROOT / "recipes" / "demo.yaml")
    assert (r.model, r.hardware.profile, r.hardware.w_bits, r.hardware.a_bits) == ("resnet_tiny", "gap8-pulp-nn", (8, 4, 2), (8,))
    assert r.budgets == {"size_bytes": "uniform:w4a8"}
    assert r.finetune is not None and r.finetune.distill is not None and r.finetune.distill.alpha == 0.5
    assert r.allocation.pareto is not None and r.allocation.pareto.resource == "size_bytes"
    assert r.finetune.seed is None  # QAT follows the recipe's seed unless finetune.seed is given
    assert r.allocation.gap_rel == 1e-4  # the ILP's default relative gap (0 proves the optimum)


def test_typo_in_key_names_file_key_and_valid_keys(tmp_path: Path) -> None:
    data = _base()
    data["hardware"]["w_bit"] = data["hardware"].pop("w_bits")
    p = _write(tmp_path, data)
    with pytest.raises(ConfigError) as exc:
        load_recipe(p)
    msg = str(exc.value)
    assert str(p) in msg and "'hardware.w_bit'" in msg and "w_bits" in msg


def test_top_level_typo(tmp_path: Path) -> None:
    data = _base()
    data["budget"] = data.pop("budgets")
    with pytest.raises(ConfigError, match=r"unknown key 'budget' \(did you mean 'budgets'\?\); valid keys: .*budgets"):
        load_recipe(_write(tmp_path, data))


def test_missing_profile_names_key_and_fix(tmp_path: Path) -> None:
    data = _base()
    data["hardware"]["profile"] = "gap9-pulp"
    with pytest.raises(MpsearchError) as exc:
        load_recipe(_write(tmp_path, data))
    msg = str(exc.value)
    assert "r.yaml: hardware.profile" in msg and "gap9-pulp" in msg and "mpsearch profiles" in msg


def test_failing_import_path(tmp_path: Path) -> None:
    data = _base()
    data["model"] = "no_such_pkg_xyz.models:build"
    with pytest.raises(ConfigError) as exc:
        load_recipe(_write(tmp_path, data))
    msg = str(exc.value)
    assert "r.yaml: model must name an importable module" in msg and "no_such_pkg_xyz.models" in msg and "fix:" in msg


def test_import_path_attribute_missing(tmp_path: Path) -> None:
    data = _base()
    data["model"] = "mpsearch.demo:no_such_function"
    with pytest.raises(ConfigError, match=r"model must name a callable in 'mpsearch.demo', but 'no_such_function' is missing"):
        load_recipe(_write(tmp_path, data))


def test_bits_outside_profile(tmp_path: Path) -> None:
    data = _base()
    data["hardware"]["profile"] = "cortex-m7-cmsis-nn"  # 8-bit only
    with pytest.raises(ConfigError, match=r"hardware.w_bits must be a subset of \[8\].*but got \[8, 4, 2\]"):
        load_recipe(_write(tmp_path, data))


def test_bad_budget_and_bad_uniform(tmp_path: Path) -> None:
    data = _base()
    data["budgets"] = {"size_bytes": "12 kilobytes"}
    with pytest.raises(ConfigError, match="size_bytes"):
        load_recipe(_write(tmp_path, data))
    data["budgets"] = {"size_bytes": "uniform:w3a8"}
    with pytest.raises(ConfigError, match=r"budgets.size_bytes must be a uniform pair that profile 'gap8-pulp-nn' runs"):
        load_recipe(_write(tmp_path, data))


def test_bad_values(tmp_path: Path) -> None:
    cases = [(("finetune", "distill", "alpha"), 1.5, "finetune.distill.alpha must be a number in [0, 1], but got 1.5"),
             (("allocation", "method"), "greedy", "allocation.method must be one of ilp, optuna, rl, but got 'greedy'"),
             (("sensitivity", "settings", "max_probe"), 3, "unknown key 'sensitivity.settings.max_probe'"),
             (("version",), 2, "version must be 1, but got 2"),
             (("finetune", "seed"), -1, "finetune.seed must be an integer >= 0 (or absent: the recipe's seed), but got -1"),
             (("allocation", "gap_rel"), 1, "allocation.gap_rel must be a number in [0, 1) (0 proves the optimum), but got 1")]
    for keys, value, message in cases:
        data = _base()
        node = data
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
        with pytest.raises(ConfigError) as exc:
            load_recipe(_write(tmp_path, data))
        assert message in str(exc.value)


def test_unknown_demo_model(tmp_path: Path) -> None:
    data = _base()
    data["model"] = "resnet_tiyn"
    with pytest.raises(UnknownNameError, match="did you mean 'resnet_tiny'"):
        load_recipe(_write(tmp_path, data))


def test_parse_uniform() -> None:
    assert parse_uniform("uniform:w4a8") == (4, 8)
    assert parse_uniform("50%") is None and parse_uniform(120) is None


def test_infeasible_budget_stops_before_sensitivity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mpsearch.pipeline import steps

    data = _base()
    data["model"] = "small_cnn"
    data["budgets"] = {"size_bytes": 100}
    r = load_recipe(_write(tmp_path, data))

    def boom(*_a, **_k):  # the heavy step must never be reached
        raise AssertionError("sensitivity ran")

    monkeypatch.setattr(steps, "sensitivity_step", boom)
    with pytest.raises(InfeasibleBudgetError) as exc:
        steps.prepare(r)
    msg = str(exc.value)
    assert "r.yaml: budgets.size_bytes must be >=" in msg and "but got 100" in msg and "fix:" in msg
    # the smallest total = every layer at its cheapest candidate (W2A8 on gap8), summed by hand
    import mpsearch as mps
    from mpsearch.hardware import candidates_for_layers, layer_costs

    inputs = steps.load_inputs(r)
    layers = mps.discover(inputs.model, inputs.example_inputs)
    profile = mps.load_profile("gap8-pulp-nn")
    cands = candidates_for_layers(layers, profile, (2, 4, 8), (8,))
    by_name = {lay.name: lay for lay in layers}
    lo = sum(min(layer_costs(by_name[n], c, profile).size_bytes for c in cs) for n, cs in cands.items())
    assert exc.value.smallest["size_bytes"] == pytest.approx(lo)


def test_activation_traces_default_on_with_several_activation_widths(tmp_path: Path) -> None:
    from mpsearch.recipe import sensitivity_config

    r = load_recipe(ROOT / "recipes" / "demo.yaml")
    assert sensitivity_config(r, activation_bits=[8]).activations is False
    assert sensitivity_config(r, activation_bits=[8, 8]).activations is False
    assert sensitivity_config(r, activation_bits=[4, 8]).activations is True
    assert sensitivity_config(r, activation_bits=[4, 8]).max_probes == 24  # the recipe's own settings stay
    data = _base()
    data["sensitivity"]["settings"]["activations"] = False  # an explicit choice wins
    r2 = load_recipe(_write(tmp_path, data))
    assert sensitivity_config(r2, activation_bits=[4, 8]).activations is False


def test_gap_rel_reaches_the_allocation(tmp_path: Path) -> None:
    """allocation.gap_rel is what the ILP step passes to allocate: 0 gives a proven optimum."""
    from types import SimpleNamespace

    from mpsearch.allocation import DEFAULT_GAP_REL
    from mpsearch.core.cost_table import CostTable
    from mpsearch.pipeline import steps

    assert load_recipe(ROOT / "recipes" / "demo.yaml").allocation.gap_rel == DEFAULT_GAP_REL
    data = _base()
    data["allocation"]["gap_rel"] = 0
    recipe = load_recipe(_write(tmp_path, data))
    # two layers, (omega, size): a (1, 8) / (5, 4), b (0, 16) / (4, 8); size <= 20: by hand the
    # choices are a4+b8 = 20 B omega 5, a8+b4 = 16 B omega 5, a4+b4 = 12 B omega 9; a8+b8 is 24 B
    recs = [{"layer": "a", "w_bits": 8, "a_bits": 8, "omega": 1.0, "size_bytes": 8.0},
            {"layer": "a", "w_bits": 4, "a_bits": 8, "omega": 5.0, "size_bytes": 4.0},
            {"layer": "b", "w_bits": 8, "a_bits": 8, "omega": 0.0, "size_bytes": 16.0},
            {"layer": "b", "w_bits": 4, "a_bits": 8, "omega": 4.0, "size_bytes": 8.0}]
    prep = SimpleNamespace(recipe=recipe, budgets={"size_bytes": 20.0}, profile=SimpleNamespace(rules=None))
    plan = steps.choose_plan(prep, CostTable.from_records(recs), bars=None)
    assert plan.status == "optimal" and plan.gap == 0.0 and plan.objective == 5.0
    assert plan.meta["gap_rel"] == 0.0
