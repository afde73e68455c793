"""Shared fixtures: the three digits models trained once per session into a temporary cache, and
the demo LM when the user has it cached (its training takes minutes)."""

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


@pytest.fixture(scope="session")
def cached_lm_run():
    """The demo LM ``gpt_tiny`` from the user's cache, or a skip: its training takes minutes.

    Train it once with ``python -c "from mpsearch.demo import load_demo_lm; load_demo_lm()"``
    (it lands in ``$MPSEARCH_CACHE`` or ``~/.cache/mpsearch``), or set ``MPSEARCH_TRAIN_LM=1``
    to let this fixture train it.
    """
    import os

    from mpsearch.demo import DEMO_LM_TRAIN_CONFIGS, lm_checkpoint_path, load_demo_lm_run, load_text_splits

    splits = load_text_splits()
    path = lm_checkpoint_path("gpt_tiny", DEMO_LM_TRAIN_CONFIGS["gpt_tiny"], splits)
    if not path.is_file() and os.environ.get("MPSEARCH_TRAIN_LM") != "1":
        pytest.skip(f"gpt_tiny is not cached at {path}; train it with load_demo_lm() or set MPSEARCH_TRAIN_LM=1")
    return load_demo_lm_run("gpt_tiny", splits=splits)
