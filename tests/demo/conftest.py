"""Shared fixtures: the three demo models trained once per session into a temporary cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpsearch.demo import DEMO_MODELS, DemoRun, load_demo_run


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder private to this test session (so CI always trains from scratch)."""
    return tmp_path_factory.mktemp("mpsearch_demo_cache")


@pytest.fixture(scope="session")
def demo_runs(demo_cache: Path) -> dict[str, DemoRun]:
    """name -> DemoRun, trained into ``demo_cache`` (about 3-10 s per model on 2 cores)."""
    return {name: load_demo_run(name, cache_dir=demo_cache) for name in DEMO_MODELS}
