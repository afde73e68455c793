"""Inputs that used to exit 0 while doing the wrong thing now refuse (#18 item 3)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from mpsearch.cli import main
from mpsearch.errors import ConfigError, UnknownNameError
from mpsearch.hardware import load_profile
from mpsearch.recipe import load_recipe

from cli_recipes import SMALL


def _recipe(tmp_path: Path, **changes) -> Path:
    data = copy.deepcopy(SMALL)
    for dotted, value in changes.items():
        node, *path = dotted.split("__")
        target = data
        for part in [node, *path][:-1]:
            target = target[part]
        target[[node, *path][-1]] = value
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _plan(tmp_path: Path, layers: dict[str, tuple[int, int]]) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "layers": {n: {"w_bits": w, "a_bits": a}
                                                            for n, (w, a) in layers.items()}}))
    return path


SMALL_LAYERS = ("conv1", "conv2", "fc")


@pytest.mark.parametrize("profile, bits, message", [
    ("gap8-pulp-nn", (3, 8), "must be bits that profile 'gap8-pulp-nn' runs for this conv2d layer"),
    ("cortex-m7-cmsis-nn", (4, 8), "must be bits that profile 'cortex-m7-cmsis-nn' runs for this conv2d layer (w8a8)"),
    ("cortex-m7-cmsis-nn", (2, 8), "must be bits that profile 'cortex-m7-cmsis-nn' runs for this conv2d layer (w8a8)"),
])
def test_validate_refuses_a_plan_the_profile_cannot_run(tmp_path: Path, capsys, profile, bits, message) -> None:
    from mpsearch.demo import get_model
    from mpsearch.model import discover
    import torch

    names = [lay.name for lay in discover(get_model("small_cnn"), torch.zeros(1, 1, 8, 8))]
    recipe = _recipe(tmp_path, hardware__profile=profile, hardware__w_bits=[8], budgets={"size_bytes": "uniform:w8a8"})
    layers = {n: (8, 8) for n in names}
    layers[names[0]] = bits
    plan = _plan(tmp_path, layers)
    out = tmp_path / "v.json"
    assert main(["validate", "--recipe", str(recipe), "--plan", str(plan), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{plan}: layers.{names[0]} {message}" in err and f"but got 'w{bits[0]}a{bits[1]}'" in err, err
    assert not out.exists()


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "-x", "a/b", "../up", "demo\n", ""])
def test_recipe_names_are_one_safe_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=r"r.yaml: name must be a (single safe folder name|non-empty name)"):
        load_recipe(_recipe(tmp_path, name=name), check=False)


def test_a_plain_name_still_loads(tmp_path: Path) -> None:
    assert load_recipe(_recipe(tmp_path, name="demo-1.v2_x"), check=False).results_dir == Path("runs/demo-1.v2_x")


def test_pareto_resource_is_checked_at_load(tmp_path: Path) -> None:
    path = _recipe(tmp_path, allocation__pareto__resource="watts")
    with pytest.raises(UnknownNameError, match=rf"^{path}: allocation.pareto.resource: unknown resource 'watts'.* "
                                               r"Valid: bops, latency_ms, size_bytes$"):
        load_recipe(path)
    path = _recipe(tmp_path, budgets={"watts": 3})
    with pytest.raises(UnknownNameError, match=rf"^{path}: budgets: unknown resource 'watts'"):
        load_recipe(path)


def test_allocate_without_a_budget_refuses(tmp_path: Path, capsys) -> None:
    table = tmp_path / "t.json"
    table.write_text(json.dumps({"records": [{"layer": "a", "w_bits": 8, "a_bits": 8, "omega": 1.0, "size_bytes": 8.0},
                                             {"layer": "a", "w_bits": 4, "a_bits": 8, "omega": 5.0, "size_bytes": 4.0}]}))
    out = tmp_path / "p.yaml"
    assert main(["allocate", "--table", str(table), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        "mpsearch allocate: error: at least one --budget RESOURCE=VALUE must be given (or a budgets: section in the "
        "recipe), but got none with --table; without a budget every layer takes its widest candidate\n")
    recipe = _recipe(tmp_path, budgets={})
    assert main(["allocate", "--recipe", str(recipe), "-o", str(out)]) == 2
    assert "but got none with --recipe" in capsys.readouterr().err
    assert not out.exists()


def test_a_profile_path_that_is_a_directory_says_so(tmp_path: Path) -> None:
    (tmp_path / "prof.yaml").mkdir()
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'prof.yaml'}: profile must be a file, but it is a directory$"):
        load_profile(tmp_path / "prof.yaml")


def test_dot_dot_is_refused_as_a_folder_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"r.yaml: name must be a single safe folder name \(not starting with '.' "
                                          r"or '-'\), but got '..'$"):
        load_recipe(_recipe(tmp_path, name=".."), check=False)


def test_a_solver_that_is_no_name_is_refused(tmp_path: Path) -> None:
    """Found by the fuzz suite: ``allocation.solver: []`` raised TypeError (unhashable) in the checks."""
    with pytest.raises(ConfigError, match=r"r.yaml: allocation.solver must be a solver name such as 'cbc' or 'highs', "
                                          r"but got \[\]$"):
        load_recipe(_recipe(tmp_path, allocation__solver=[]))


def test_quantize_with_a_profile_refuses_a_pair_it_cannot_run() -> None:
    """quantize(profile=...) is where validate's and run's plans become models: it checks the pairs too."""
    import torch

    import mpsearch as mps
    from mpsearch.core.plan import BitPlan, LayerBits
    from torch import nn

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    x = torch.randn(4, 1, 8, 8)
    plan = BitPlan(layers={"0": LayerBits(8, 8), "3": LayerBits(3, 8)})
    with pytest.raises(ConfigError, match=r"^quantize: layer '3': the bits must be a pair the profile 'gap8-pulp-nn' "
                                          r"runs for linear \(w8a8, .*\), but got 'w3a8'$"):
        mps.quantize(m, plan, [x], profile=mps.load_profile("gap8-pulp-nn"))
    with pytest.raises(ConfigError, match=r"'cortex-m7-cmsis-nn' runs for conv2d \(w8a8\), but got 'w4a8'$"):
        mps.quantize(m, BitPlan(layers={"0": LayerBits(4, 8)}), [x], profile=mps.load_profile("cortex-m7-cmsis-nn"))
    assert mps.quantize(m, BitPlan(layers={"0": LayerBits(3, 8)}), [x]) is not None  # no profile: any bits


def test_a_sensitivity_method_that_is_no_name_is_refused(tmp_path: Path) -> None:
    """Found by the fuzz suite: ``sensitivity.method: []`` raised TypeError (unhashable) in the checks."""
    with pytest.raises(ConfigError, match=r"r.yaml: sensitivity.method must be a sensitivity method name such as "
                                          r"'hessian', but got \[\]$"):
        load_recipe(_recipe(tmp_path, sensitivity__method=[]))
