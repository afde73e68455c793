"""Each recipe spec checks its own rules when built; the loader names the file and the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mpsearch.allocation import Budget, Budgets, UniformBudget
from mpsearch.errors import ConfigError
from mpsearch.recipe import (AllocationSpec, DataSpec, DistillSpec, FinetuneSpec, HardwareSpec, ParetoSpec, Recipe,
                             SensitivitySpec, ValidationSpec, load_recipe, recipe_from_dict)

ROOT = Path(__file__).resolve().parents[2]


def _base() -> dict:
    return yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())


def _set(data: dict, keys: tuple[str, ...], value) -> dict:
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return data


# (spec built in Python, its message; the same value in a recipe file, the file's message)
CASES = [
    (lambda: DataSpec(batch_size=-1), "DataSpec: batch_size must be an integer >= 1, but got -1",
     ("data", "batch_size"), -1, "r.yaml: data.batch_size must be an integer >= 1, but got -1"),
    (lambda: DataSpec(calib_batches=True), "DataSpec: calib_batches must be an integer >= 1, but got True",
     ("data", "calib_batches"), True, "r.yaml: data.calib_batches must be an integer >= 1, but got True"),
    (lambda: DataSpec(source="mnist"), "DataSpec: source must be 'digits', 'stdlib_text' or 'package.module:function', but got 'mnist'",
     ("data", "source"), "mnist", "r.yaml: data.source must be 'digits', 'stdlib_text' or 'package.module:function', but got 'mnist'"),
    (lambda: SensitivitySpec(n_batches=0), "SensitivitySpec: n_batches must be an integer >= 1, but got 0",
     ("sensitivity", "n_batches"), 0, "r.yaml: sensitivity.n_batches must be an integer >= 1, but got 0"),
    (lambda: SensitivitySpec(settings=[1]), "SensitivitySpec: settings must be a mapping of config field -> value, but got [1]",
     ("sensitivity", "settings"), [1], "r.yaml: sensitivity.settings must be a mapping of config field -> value, but got [1]"),
    (lambda: HardwareSpec(batch=0), "HardwareSpec: batch must be an integer >= 1 (the deployment batch size), but got 0",
     ("hardware", "batch"), 0, "r.yaml: hardware.batch must be an integer >= 1 (the deployment batch size), but got 0"),
    (lambda: HardwareSpec(profile=""), "HardwareSpec: profile must be a profile name or a path to a profile YAML, but got ''",
     ("hardware", "profile"), "", "r.yaml: hardware.profile must be a profile name or a path to a profile YAML, but got ''"),
    (lambda: HardwareSpec(w_bits=[4, 9]), "HardwareSpec: w_bits must be an integer in 2..8 or 16, but got 9",
     ("hardware", "w_bits"), [4, 9], "r.yaml: hardware.w_bits must be an integer in 2..8 or 16, but got 9"),
    (lambda: HardwareSpec(a_bits=[]), "HardwareSpec: a_bits must be a non-empty list of bit-widths such as [2, 4, 8], but got []",
     ("hardware", "a_bits"), [], "r.yaml: hardware.a_bits must be a non-empty list of bit-widths such as [2, 4, 8], but got []"),
    (lambda: ParetoSpec(n_points=1), "ParetoSpec: n_points must be an integer >= 2, but got 1",
     ("allocation", "pareto", "n_points"), 1, "r.yaml: allocation.pareto.n_points must be an integer >= 2, but got 1"),
    (lambda: AllocationSpec(method="greedy"), "AllocationSpec: method must be one of ilp, optuna, rl, but got 'greedy'",
     ("allocation", "method"), "greedy", "r.yaml: allocation.method must be one of ilp, optuna, rl, but got 'greedy'"),
    (lambda: AllocationSpec(n_trials=0), "AllocationSpec: n_trials must be an integer >= 1, but got 0",
     ("allocation", "n_trials"), 0, "r.yaml: allocation.n_trials must be an integer >= 1, but got 0"),
    (lambda: AllocationSpec(gap_rel=1), "AllocationSpec: gap_rel must be a number in [0, 1) (0 proves the optimum), but got 1",
     ("allocation", "gap_rel"), 1, "r.yaml: allocation.gap_rel must be a number in [0, 1) (0 proves the optimum), but got 1"),
    (lambda: FinetuneSpec(epochs=-1), "FinetuneSpec: epochs must be an integer >= 0, but got -1",
     ("finetune", "epochs"), -1, "r.yaml: finetune.epochs must be an integer >= 0, but got -1"),
    (lambda: FinetuneSpec(lr=float("inf")), "FinetuneSpec: lr must be a finite number > 0, but got inf",
     ("finetune", "lr"), 0, "r.yaml: finetune.lr must be a finite number > 0, but got 0"),
    (lambda: FinetuneSpec(batch_size=0), "FinetuneSpec: batch_size must be an integer >= 1, but got 0",
     ("finetune", "batch_size"), 0, "r.yaml: finetune.batch_size must be an integer >= 1, but got 0"),
    (lambda: FinetuneSpec(seed=-1), "FinetuneSpec: seed must be an integer >= 0 (or absent: the recipe's seed), but got -1",
     ("finetune", "seed"), -1, "r.yaml: finetune.seed must be an integer >= 0 (or absent: the recipe's seed), but got -1"),
    (lambda: DistillSpec(temperature=0), "DistillSpec: temperature must be a finite number > 0, but got 0",
     ("finetune", "distill", "temperature"), 0, "r.yaml: finetune.distill.temperature must be a finite number > 0, but got 0"),
    (lambda: DistillSpec(alpha=1.5), "DistillSpec: alpha must be a number in [0, 1], but got 1.5",
     ("finetune", "distill", "alpha"), 1.5, "r.yaml: finetune.distill.alpha must be a number in [0, 1], but got 1.5"),
    (lambda: ValidationSpec(split="dev"), "ValidationSpec: split must be one of train, val, test, but got 'dev'",
     ("validation", "split"), "dev", "r.yaml: validation.split must be one of train, val, test, but got 'dev'"),
    (lambda: ValidationSpec(integer=1), "ValidationSpec: integer must be true or false, but got 1",
     ("validation", "integer"), 1, "r.yaml: validation.integer must be true or false, but got 1"),
    (lambda: Recipe(name="a b", model="m"), "recipe: name must be a non-empty name of letters, digits, '_', '-' or '.', but got 'a b'",
     ("name",), "a b", "r.yaml: name must be a non-empty name of letters, digits, '_', '-' or '.', but got 'a b'"),
    (lambda: Recipe(name="n", model="m", seed=-1), "recipe: seed must be an integer >= 0, but got -1",
     ("seed",), -1, "r.yaml: seed must be an integer >= 0, but got -1"),
    (lambda: Recipe(name="n", model=""), "recipe: model must be a demo model name or 'package.module:function', but got ''",
     ("model",), "", "r.yaml: model must be a demo model name or 'package.module:function', but got ''"),
    (lambda: Recipe(name="n", model="m", model_kwargs=[1]), "recipe: model_kwargs must be a mapping of keyword -> value, but got [1]",
     ("model_kwargs",), [1], "r.yaml: model_kwargs must be a mapping of keyword -> value, but got [1]"),
    (lambda: Recipe(name="n", model="m", budgets=[1]),
     "recipe: budgets must be a mapping of resource -> limit (120k, 50%, uniform:w4a8), but got [1]",
     ("budgets",), [1], "r.yaml: budgets must be a mapping of resource -> limit (120k, 50%, uniform:w4a8), but got [1]"),
    (lambda: Recipe(name="n", model="m", output_dir=""), "recipe: output.dir must be a folder path, but got ''",
     ("output", "dir"), "", "r.yaml: output.dir must be a folder path, but got ''"),
    (lambda: recipe_from_dict({"version": 2, "model": "m"}), "recipe: version must be 1, but got 2", ("version",), True, "r.yaml: version must be 1, but got True"),
]


@pytest.mark.parametrize("build, message, keys, value, file_message", CASES, ids=[".".join(c[2]) for c in CASES])
def test_rule_on_the_type_and_in_the_file(build, message, keys, value, file_message):
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value) == message
    with pytest.raises(ConfigError) as info:
        recipe_from_dict(_set(_base(), keys, value), where="r.yaml")
    assert str(info.value) == file_message


def test_specs_keep_their_values_in_normal_form():
    h = HardwareSpec(w_bits=[2, 8, 4, 8], a_bits=8)
    assert (h.w_bits, h.a_bits) == ((8, 4, 2), (8,))
    assert HardwareSpec().w_bits is None  # None: every width the profile runs
    assert HardwareSpec(w_bits=[16, 4]).w_bits == (16, 4)  # 16 (keep in 16-bit) is a bit-width; the profile decides
    assert FinetuneSpec(seed=None).seed is None and FinetuneSpec(seed=3).seed == 3
    assert AllocationSpec(pareto=None).pareto is None


def test_recipe_parses_its_budgets_when_built():
    r = Recipe(name="n", model="m", budgets={"size_bytes": "120k", "bops": "50%", "latency_ms": "uniform:w4a8"})
    assert isinstance(r.budgets, Budgets)
    assert r.budgets.entries == (Budget("size_bytes", 120_000.0), Budget("bops", 0.5, True),
                                 UniformBudget("latency_ms", 4, 8))
    assert r.budgets == {"size_bytes": "120k", "bops": "50%", "latency_ms": "uniform:w4a8"}  # reads as written
    assert r.with_output_dir("elsewhere").budgets is r.budgets  # a Budgets is kept, not parsed again
    assert Recipe(name="n", model="m").budgets == Budgets()
    with pytest.raises(ConfigError, match=r"^r.yaml: budgets: size_bytes must be a number .*but got '12 kilobytes'$"):
        Recipe(name="n", model="m", budgets={"size_bytes": "12 kilobytes"}, path="r.yaml")


def test_top_level_errors_come_first_as_in_the_file():
    data = _set(_set(_base(), ("seed",), -1), ("data", "batch_size"), 0)
    with pytest.raises(ConfigError, match=r"^r.yaml: seed must be"):
        recipe_from_dict(data, where="r.yaml")


def test_recipe_w_bits_take_16_and_the_profile_refuses_what_it_cannot_run(tmp_path: Path):
    data = _set(_base(), ("hardware", "w_bits"), [16, 8, 8])
    assert recipe_from_dict(data, where="r.yaml").hardware.w_bits == (16, 8)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_recipe(path)  # gap8-pulp-nn runs 2, 4 and 8 bits
    assert str(info.value) == (f"{path}: hardware.w_bits must be a subset of [2, 4, 8] (what profile 'gap8-pulp-nn' "
                               f"runs; fix: drop the others), but got [16, 8]")


def test_a_bad_format_key_is_named_by_its_index():
    from mpsearch.recipe.specs import HardwareSpec

    with pytest.raises(ConfigError) as info:
        HardwareSpec(profile="x86-2core-int", formats=["w4a16g128", "w4a16g7x"])
    assert str(info.value).startswith("HardwareSpec: formats[1] must be of the form \"w<bits>a<bits>[g<group_size>][z][t][+<method>]\"")
    assert str(info.value).endswith("but got 'w4a16g7x'")


def test_sensitivity_bit_settings_take_one_int_or_a_list_and_refuse_junk(tmp_path):
    from mpsearch.recipe import load_recipe, sensitivity_config

    base = {"version": 1, "name": "x", "model": "small_cnn", "budgets": {"size_bytes": "50%"},
            "sensitivity": {"method": "empirical", "settings": {"w_bits": 4}}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(base))
    assert sensitivity_config(load_recipe(path)).w_bits == (4,)
    base["sensitivity"]["settings"]["w_bits"] = "four"
    path.write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigError, match=r"r.yaml: sensitivity.settings.w_bits must be a non-empty list of bit-widths"):
        sensitivity_config(load_recipe(path))
