"""HAQ's environment as a :class:`gymnasium.Env`: one step per free unit, reward at the end.

Imported only by the RL explorer (needs the ``rl`` extra: gymnasium, stable-baselines3).
It is a real environment: ``DDPG("MlpPolicy", HaqEnv(space, features, reward_fn)).learn(...)``
runs HAQ on the omega proxy without the ask/tell explorer. The explorer itself drives the
same observations and action mapping step by step so the caller can own the evaluation.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from mpsearch.core.plan import BitPlan


def action_to_index(action: float, n_keys: int) -> int:
    """Map an action in [0, 1] to one of ``n_keys`` candidates (cheapest first), equal-width bins."""
    return int(min(max(int(float(action) * n_keys), 0), n_keys - 1))


class HaqEnv(gym.Env):
    """One episode = one plan. State: the unit's static features + the previous action.

    Args:
        space: the :class:`~mpsearch.explorers._space.SearchSpace` (units, budgets, repair).
        features: float array (n_units, n_static) in [0, 1] (see ``rl_explorer.unit_features``).
        reward_fn: ``reward_fn(plan) -> float`` called on the repaired plan at the episode's
            end; None gives reward 0 (the ask/tell explorer fills rewards in at ``tell``).
    """

    metadata = {"render_modes": []}

    def __init__(self, space: Any, features: np.ndarray, reward_fn: Callable[[BitPlan], float] | None = None) -> None:
        super().__init__()
        self.space = space
        self.features = np.asarray(features, dtype=np.float32)
        self.reward_fn = reward_fn
        n_obs = self.features.shape[1] + 1  # + previous action
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(n_obs,), dtype=np.float32)
        self.action_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self._step = 0
        self._prev = 0.0
        self._choice: list[int] = []

    def observation(self, step: int, prev_action: float) -> np.ndarray:
        """State of unit ``step`` given the previous action (zeros past the last unit)."""
        if step >= len(self.features):
            return np.zeros(self.observation_space.shape, dtype=np.float32)
        return np.append(self.features[step], np.float32(prev_action)).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._step, self._prev, self._choice = 0, 0.0, []
        return self.observation(0, 0.0), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], 0.0, 1.0))
        self._choice.append(action_to_index(a, len(self.space.units[self._step].keys)))
        self._step += 1
        self._prev = a
        if self._step < self.space.n_units:
            return self.observation(self._step, a), 0.0, False, False, {}
        choice = self.space.repair(self._choice)
        plan = self.space.plan(choice, solver="rl-ddpg", status="sampled")
        reward = float(self.reward_fn(plan)) if self.reward_fn is not None else 0.0
        return self.observation(self._step, a), reward, True, False, {"plan": plan, "choice": choice}
