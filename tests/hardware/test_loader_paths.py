"""Profile lookup (#18 item 3 and 8): a directory is named as one, and a user file that shadows a
shipped profile is named in a log line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from mpsearch.errors import ConfigError
from mpsearch.hardware import SHIPPED_DIR, load_profile


def test_a_directory_is_not_a_profile(tmp_path: Path) -> None:
    (tmp_path / "hw").mkdir()
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'hw'}: profile must be a file, but it is a directory$"):
        load_profile(tmp_path / "hw")


def test_a_shadowing_profile_is_named_in_a_log_line(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hw_profiles").mkdir()
    data = yaml.safe_load((SHIPPED_DIR / "gap8-pulp-nn.yaml").read_text())
    data["description"] = "my own GAP-8"
    (tmp_path / "hw_profiles" / "gap8-pulp-nn.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with caplog.at_level(logging.WARNING, logger="mpsearch"):
        p = load_profile("gap8-pulp-nn")
    assert p.description == "my own GAP-8"
    assert [r.getMessage() for r in caplog.records] == [
        f"hardware profile 'gap8-pulp-nn': using {Path('hw_profiles/gap8-pulp-nn.yaml').absolute()}, which shadows "
        f"the shipped profile of that name"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mpsearch"):
        load_profile("cortex-m7-cmsis-nn")  # not shadowed: no line
    assert caplog.records == []
