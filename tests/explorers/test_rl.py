"""RL explorer (HAQ-style DDPG via Stable-Baselines3): optimum, features, environment."""

import importlib.util

import numpy as np
import pytest

from mpsearch.allocation import allocate
from mpsearch.core.types import Layer
from mpsearch.explorers import search
from mpsearch.explorers._space import SearchSpace
from mpsearch.testing.explorers import random_table

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("stable_baselines3") is None or importlib.util.find_spec("gymnasium") is None,
    reason="rl extra (stable-baselines3, gymnasium) not installed")

BUDGET = {"size_bytes": "40%"}
SMALL = {"net_arch": (64, 64), "n_warmup": 10}


TWO = {"size_bytes": "50%", "bops": "40%"}  # a_bits 4/8 below: BOPs are not proportional to size


def test_rl_within_1pct_of_ilp_optimum_on_two_budgets_in_60_episodes():
    table = random_table(10, (2, 4, 8), seed=11, a_bits=(4, 8))
    opt = allocate(table, budgets=TWO, gap_rel=0).objective
    res = search(table, "rl", TWO, n_trials=60, seed=0, **SMALL)  # default repair: greedy
    assert res.meta["repair"] == "greedy"
    assert res.n_evaluations == 60  # local improvement episodes included
    assert res.best_metrics["omega"] <= opt * 1.01
    space = SearchSpace(table, TWO)
    assert all(space.plan_is_feasible(e.plan) for e in res.evaluations)


def test_rl_user_metric_reward_and_seeded_repeat():
    table = random_table(5, (2, 4, 8), seed=2)

    def evaluate(plan):  # a made-up "accuracy": 90 minus omega, maximized
        return {"accuracy": 90.0 - table.totals(table.rows_for_plan(plan))["omega"]}

    kw = dict(objectives={"accuracy": "maximize"}, n_trials=15, seed=5, n_warmup=3, net_arch=(16, 16), batch_size=8)
    a = search(table, "rl", BUDGET, evaluate, **kw)
    b = search(table, "rl", BUDGET, evaluate, **kw)
    assert [e.metrics["accuracy"] for e in a.evaluations] == [e.metrics["accuracy"] for e in b.evaluations]
    best = max(e.metrics["accuracy"] for e in a.evaluations)
    assert a.best_metrics["accuracy"] == best == pytest.approx(90.0 - a.best_metrics["omega"])


def test_state_features_with_and_without_layers():
    from mpsearch.explorers.rl_explorer import unit_features

    table = random_table(3, (4, 8), seed=0)
    space = SearchSpace(table, {"size_bytes": "50%"})
    plain = unit_features(space)
    # index, mean size_bytes, log omega spread -> 3 columns, each min-max scaled to [0, 1]
    assert plain.shape == (3, 3)
    assert plain[:, 0].tolist() == [0.0, 0.5, 1.0]
    assert plain.min() == 0.0 and plain.max() == 1.0
    layers = [Layer(f"l{i}", "conv2d" if i < 2 else "linear", (8, 4, 3, 3), 288, 1000, (1, 4, 8 >> i, 8 >> i),
                    (1, 8, 8, 8), index=i, in_channels=4, out_channels=8 * (i + 1), kernel_size=(3, 3),
                    stride=(1 + i % 2, 1 + i % 2)) for i in range(3)]
    rich = unit_features(space, layers)
    assert rich.shape == (3, 11)
    assert rich[:, 2].tolist() == [0.0, 0.5, 1.0]  # out_channels 8, 16, 24
    assert rich[:, 3].tolist() == [0.0, 1.0, 0.0]  # stride 1, 2, 1


def test_haq_env_is_a_valid_gymnasium_env_and_rewards_the_repaired_plan():
    from gymnasium.utils.env_checker import check_env

    from mpsearch.explorers._haq_env import HaqEnv
    from mpsearch.explorers.rl_explorer import unit_features

    table = random_table(4, (2, 4, 8), seed=1)
    space = SearchSpace(table, BUDGET)
    env = HaqEnv(space, unit_features(space), reward_fn=lambda plan: -plan.objective)
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    for _ in range(3):
        _, r, done, _, _ = env.step(np.array([1.0], dtype=np.float32))
        assert r == 0.0 and not done
    _, r, done, _, info = env.step(np.array([1.0], dtype=np.float32))  # all 8-bit: infeasible, repaired
    assert done and space.plan_is_feasible(info["plan"]) and r == -info["plan"].objective
