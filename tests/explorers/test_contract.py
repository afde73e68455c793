"""Every registered explorer passes the shared contract in mpsearch.testing.explorers."""

import importlib.util

import pytest

from mpsearch.explorers import EXPLORERS, get_explorer
from mpsearch.testing.explorers import EXPLORER_CHECKS, run_check

HAVE_SB3 = importlib.util.find_spec("stable_baselines3") is not None and importlib.util.find_spec("gymnasium") is not None

# small settings so that the whole contract runs in seconds
_OPTIONS = {
    "optuna": {"sampler_options": {"n_startup_trials": 4}},
    "rl": {"n_warmup": 3, "net_arch": (32, 32), "batch_size": 16},
}


def _factory(name):
    return lambda table, **kw: get_explorer(name, table, **_OPTIONS[name], **kw)


@pytest.mark.parametrize("name", sorted(EXPLORERS))
@pytest.mark.parametrize("check", sorted(EXPLORER_CHECKS))
def test_contract(name, check):
    if name == "rl" and not HAVE_SB3:
        pytest.skip("rl extra (stable-baselines3, gymnasium) not installed")
    run_check(check, _factory(name))


def test_unknown_explorer_lists_valid_names():
    from mpsearch import UnknownNameError
    from mpsearch.testing.explorers import random_table

    with pytest.raises(UnknownNameError, match="Valid: optuna, rl"):
        get_explorer("optunaa", random_table(2))
