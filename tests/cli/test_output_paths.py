"""Output paths that cannot be written stop with a message naming the flag and the rule, before any
work (#18 item 2), and result files get the permissions of a plain ``open(path, "w")`` (item 8)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mpsearch.cli import main
from mpsearch.core.io import check_output_path, dump_structured, write_bytes_atomic
from mpsearch.errors import ConfigError

RECORDS = [
    {"layer": "a", "w_bits": 8, "a_bits": 8, "omega": 1.0, "size_bytes": 8.0},
    {"layer": "a", "w_bits": 4, "a_bits": 8, "omega": 5.0, "size_bytes": 4.0},
]
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture()
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "table.json").write_text(json.dumps({"records": RECORDS}))
    (tmp_path / "README.md").write_text("a file\n")
    (tmp_path / "runs").mkdir()
    return tmp_path


def _allocate(out: str) -> list[str]:
    return ["allocate", "--table", "table.json", "--budget", "size_bytes=6", "-o", out]


@pytest.mark.parametrize("out, message", [
    ("README.md/p.yaml", "-o must be a file path whose parent folders are folders, but got 'README.md/p.yaml', "
                         "and 'README.md' is a file"),
    ("runs", "-o must be a file path, but got 'runs', which is a folder"),
    ("/proc/p.yaml", "-o must be a file path in a writable folder, but got '/proc/p.yaml' (creating a file in "
                     "'/proc' failed: "),
])
def test_allocate_refuses_an_unwritable_output(here: Path, capsys, out: str, message: str) -> None:
    if out.startswith("/proc") and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    assert main(_allocate(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mpsearch allocate: error: {message}"), err
    assert sorted(p.name for p in here.iterdir()) == ["README.md", "runs", "table.json"]  # nothing written


def test_allocate_still_writes_into_new_folders(here: Path) -> None:
    assert main(_allocate("new/deeper/p.yaml") + ["--quiet"]) == 0
    from mpsearch.core.plan import BitPlan

    assert BitPlan.load("new/deeper/p.yaml").layers["a"].key == "w4a8"  # budget 6 B: only a4 (4 B) fits


def test_run_checks_its_output_folder_before_any_work(here: Path, capsys, monkeypatch) -> None:
    import mpsearch.pipeline

    def no_work(*_a, **_k):
        raise AssertionError("run_recipe must not start")

    monkeypatch.setattr(mpsearch.pipeline, "run_recipe", no_work)
    assert main(["run", str(RECIPES / "demo.yaml"), "--output-dir", "README.md", "--quiet"]) == 2
    assert capsys.readouterr().err == ("mpsearch run: error: --output-dir must be a folder path, but got "
                                       "'README.md', which is a file\n")
    (here / "out").mkdir()
    (here / "out" / "demo").write_text("a file where the results folder goes")
    assert main(["run", str(RECIPES / "demo.yaml"), "--output-dir", "out", "--quiet"]) == 2
    assert capsys.readouterr().err == ("mpsearch run: error: the results folder (--output-dir/<name>) must be a "
                                       "folder path, but got 'out/demo', which is a file\n")


def test_the_check_names_where_and_key(here: Path) -> None:
    with pytest.raises(ConfigError, match=r"^write_profile: path must be a file path, but got 'runs', which is a "
                                          r"folder$"):
        check_output_path("runs", "write_profile", "path")
    assert check_output_path("x/y/z.yaml", "", "-o") == Path("x/y/z.yaml")
    assert not Path("x").exists()  # checking creates nothing


def test_a_failed_write_is_a_config_error_naming_the_path(here: Path) -> None:
    with pytest.raises(ConfigError, match=r"^README.md/p.yaml: must be a file path in a writable folder, but "
                                          r"writing failed: "):
        dump_structured({"a": 1}, "README.md/p.yaml")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_result_files_follow_the_umask(here: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        write_bytes_atomic(here / "r.bin", b"x")
        dump_structured({"a": 1}, here / "r.yaml")
    finally:
        os.umask(old)
    assert stat.S_IMODE((here / "r.bin").stat().st_mode) == mode
    assert stat.S_IMODE((here / "r.yaml").stat().st_mode) == mode


def test_the_pareto_plot_follows_the_umask(here: Path) -> None:
    from mpsearch.report.plots import plot_pareto

    old = os.umask(0o022)
    try:
        path = plot_pareto(here / "p.png", "size_bytes", [{"size_bytes": 10.0, "omega": 1.0},
                                                          {"size_bytes": 20.0, "omega": 0.5}], {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
