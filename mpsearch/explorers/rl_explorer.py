"""RL explorer after HAQ (Wang et al., 2019): a DDPG agent picks one candidate per layer.

Agent: Stable-Baselines3's ``DDPG`` (actor/critic networks, target networks, replay buffer
and its ``train`` step) over :class:`~mpsearch.explorers._haq_env.HaqEnv`. SB3's ``learn``
owns the environment loop, which would take the evaluation away from the caller; so the
explorer drives the same environment itself (ask = run the actor over the units, tell =
store the episode's transitions and call ``DDPG.train``), which keeps ask/tell and still
uses SB3's agent unchanged. Needs the ``rl`` extra (stable-baselines3, gymnasium).

HAQ's formulation, as kept here:

* one step per free unit (a tie group is one step, pinned layers have none);
* state per unit, each column min-max normalized to [0, 1] over the units. With ``layers``
  (:class:`~mpsearch.core.types.Layer`, matched by name): HAQ's kind, in/out channels,
  stride, kernel, log parameters, log input feature-map size, depthwise flag; always,
  from the table: index, the unit's mean cost per budgeted resource, its omega spread
  (max - min, log), and the previous action. Without ``layers`` only the table columns;
* continuous action in [0, 1] mapped to the unit's candidates sorted by cost (equal bins);
* warm-up episodes with uniform random actions, then the actor plus truncated (clipped)
  Gaussian noise whose width decays per episode (HAQ: 0.5, x0.99);
* the budget enforced at the episode end by the space's repair, so every evaluated plan is
  feasible: "greedy" by default, "haq" (lower from the last layer, HAQ's rule) on request;
* local improvement episodes (``local_search``, shared with every explorer): part of the
  episodes after warm-up replay a neighbour of the best plan so far instead of the actor's
  choice, stored in the replay buffer like any episode;
* reward at the end: omega proxy on a log scale in [0, 1] (1 = the table's smallest omega,
  0 = its largest; log so that relative gains count near the optimum too) or
  ``+/- reward_scale x metric`` for a user metric; every transition of the episode gets
  it minus a moving-average baseline (HAQ); a failed evaluation gets the worst reward seen;
* discount 1, one gradient step per stored transition (HAQ's defaults).

Several objectives: the reward uses the first one; the Pareto set is still taken over all
evaluated plans. Seeded: the explorer keeps its own numpy and torch random states and
swaps them in around each use, so two explorers with one seed give the same plans.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Mapping

import numpy as np

from mpsearch.core.checks import check_int, check_number
from mpsearch.core.cost_table import CostTable
from mpsearch.core.types import LAYER_KINDS
from mpsearch.errors import ConfigError, unknown_name
from mpsearch.explorers._base import Explorer
from mpsearch.explorers._result import Evaluation, Trial


def unit_features(explorer_space: Any, layers: Any = None) -> np.ndarray:
    """Static state columns per free unit, min-max normalized to [0, 1] (shape n_units x n)."""
    space = explorer_space
    table = space.table
    cols: list[list[float]] = []
    by_name = {lay.name: lay for lay in layers} if layers is not None else None
    resources = tuple(space.budgets) or table.resource_names
    for j, u in enumerate(space.units):
        row: list[float] = []
        if by_name is not None:
            name = table.layers[u.layers[0]]
            if name not in by_name:
                raise unknown_name("layer", name, by_name, "rl explorer: layers")
            lay = by_name[name]
            fmap = math.prod(lay.input_shape[2:]) if len(lay.input_shape) > 2 else 1
            row += [LAYER_KINDS.index(lay.kind) if lay.kind in LAYER_KINDS else -1, lay.in_channels,
                    lay.out_channels, max(lay.stride or (1,)), max(lay.kernel_size or (1,)),
                    math.log1p(lay.n_params), math.log1p(fmap), float(lay.kind.startswith("depthwise"))]
        omegas = table.omega[u.rows].sum(axis=0)
        row += [j] + [float(table.resources[r][u.rows].sum(axis=0).mean()) for r in resources]
        row += [math.log1p(max(float(omegas.max() - omegas.min()), 0.0))]
        cols.append(row)
    arr = np.array(cols, dtype=np.float64).reshape(len(space.units), -1)
    lo, hi = arr.min(axis=0, initial=np.inf), arr.max(axis=0, initial=-np.inf)
    span = np.where(hi > lo, hi - lo, 1.0)
    return ((arr - lo) / span).astype(np.float32) if len(arr) else arr.astype(np.float32)


class RLExplorer(Explorer):
    """HAQ-style DDPG explorer (ask = one episode, tell = its reward). ``n_trials`` = episodes.

    Args:
        table, budgets, objectives, pins, layers, seed, n_trials: see
            :class:`~mpsearch.explorers.Explorer`.
        repair: ``"greedy"`` (default: lower by omega per weighted violation over all budgets,
            then refill the slack toward the sample) or ``"haq"`` (HAQ's own rule: lower from
            the last layer; 23-166% above the ILP optimum after 300 episodes on the
            benchmark tables, so not the default).
        local_search: share of the episodes after warm-up spent on local improvement of the
            best plan so far (see :class:`~mpsearch.explorers.Explorer`); those episodes
            go into the replay buffer like the actor's (DDPG is off-policy).
        n_warmup: episodes of uniform random actions before the actor acts (HAQ: 20).
        noise_init: std of the exploration noise in action units (HAQ: 0.5).
        noise_decay: factor per episode after warm-up (HAQ: 0.99).
        learning_rate: Adam step of actor and critic (SB3 uses one for both).
        batch_size: transitions per gradient step (HAQ: 64).
        buffer_episodes: replay capacity in episodes (HAQ: 128).
        tau: soft target update (HAQ: 0.01).
        net_arch: hidden sizes of actor and critic (HAQ: 400, 300).
        moving_alpha: baseline update rate (HAQ: 0.5).
        reward_scale: factor on a user metric's reward (HAQ: 0.1 on accuracy in %).
        n_threads: torch threads while the agent acts or trains (restored afterwards).
    """

    name = "rl"

    def __init__(self, table: CostTable, *, repair: str = "greedy", n_warmup: int = 20, noise_init: float = 0.5,
                 noise_decay: float = 0.99, learning_rate: float = 1e-3, batch_size: int = 64,
                 buffer_episodes: int = 128, tau: float = 0.01, net_arch: tuple[int, ...] = (400, 300),
                 moving_alpha: float = 0.5, reward_scale: float = 1.0, n_threads: int = 1,
                 **base: Any) -> None:
        super().__init__(table, repair=repair, **base)
        w = "rl explorer"
        check_int(n_warmup, w, "n_warmup", min=0)
        check_number(noise_init, w, "noise_init", min=0, finite=False)
        check_number(noise_decay, w, "noise_decay", min=0, max=1, min_exclusive=True)
        check_int(batch_size, w, "batch_size", min=1)
        check_int(buffer_episodes, w, "buffer_episodes", min=1)
        check_number(learning_rate, w, "learning_rate", min=0, min_exclusive=True, finite=False)
        check_number(tau, w, "tau", min=0, max=1, min_exclusive=True)
        check_number(moving_alpha, w, "moving_alpha", min=0, max=1)
        self.n_warmup, self.noise_init, self.noise_decay = n_warmup, float(noise_init), float(noise_decay)
        self.learning_rate, self.batch_size, self.buffer_episodes = float(learning_rate), batch_size, buffer_episodes
        self.tau, self.net_arch, self.moving_alpha = float(tau), tuple(net_arch), float(moving_alpha)
        self.reward_scale = float(reward_scale)
        self.n_threads = max(int(n_threads), 1)
        self.features = unit_features(self.space, self.layers)
        om = [table.omega[table.offsets[i]:table.offsets[i + 1]] for i in range(table.n_layers)]
        self._omega_lo = float(sum(o.min() for o in om))
        self._omega_hi = float(sum(o.max() for o in om))
        self._model: Any = None
        self._env: Any = None
        self._rng = np.random.default_rng(self.seed)
        self._rng_states: tuple[Any, Any] | None = None
        self._episode = 0
        self._baseline: float | None = None
        self._rewards: list[float] = []
        self._episode_data: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._choices: dict[int, tuple[int, ...]] = {}  # episode -> repaired choice (local search's memory)

    # -- engine --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run with this explorer's numpy/torch global RNG states (SB3 samples from them)."""
        import torch

        outer = (np.random.get_state(), torch.random.get_rng_state())
        outer_threads = torch.get_num_threads()
        torch.set_num_threads(self.n_threads)  # small MLPs: more threads only add contention
        if self._rng_states is None:
            np.random.seed(self.seed)
            torch.manual_seed(self.seed)
        else:
            np.random.set_state(self._rng_states[0])
            torch.random.set_rng_state(self._rng_states[1])
        try:
            yield
        finally:
            self._rng_states = (np.random.get_state(), torch.random.get_rng_state())
            np.random.set_state(outer[0])
            torch.random.set_rng_state(outer[1])
            torch.set_num_threads(outer_threads)

    def _agent(self) -> Any:
        if self._model is None:
            try:
                from stable_baselines3 import DDPG
                from stable_baselines3.common.logger import Logger
            except ImportError:
                raise ConfigError("rl explorer: stable-baselines3 and gymnasium must be installed "
                                  "(pip install 'mpsearch[rl]'), but they were not found") from None
            from mpsearch.explorers._haq_env import HaqEnv

            self._env = HaqEnv(self.space, self.features)
            n = max(self.space.n_units, 1)
            with self._own_rng():
                self._model = DDPG("MlpPolicy", self._env, learning_rate=self.learning_rate,
                                   buffer_size=self.buffer_episodes * n, learning_starts=0, batch_size=self.batch_size,
                                   tau=self.tau, gamma=1.0, policy_kwargs={"net_arch": list(self.net_arch)},
                                   seed=self.seed, device="cpu", verbose=0)
                self._model.set_logger(Logger(folder=None, output_formats=[]))
        return self._model

    # -- ask / tell ----------------------------------------------------------------------------
    def ask(self) -> Trial | None:
        import torch

        if self._pending:
            raise ConfigError(f"rl explorer: tell() trial {next(iter(self._pending))} before asking again "
                              "(one episode at a time)")
        if self.n_trials is not None and self._episode >= self.n_trials:
            return None
        n_units = self.space.n_units
        obs = np.zeros((n_units + 1, self.features.shape[1] + 1), dtype=np.float32)
        actions = np.zeros(n_units, dtype=np.float64)
        warm = self._episode < self.n_warmup
        sigma = self.noise_init * self.noise_decay ** max(self._episode - self.n_warmup, 0)
        model = self._agent() if n_units else None
        prev = 0.0
        with self._own_rng():
            for j in range(n_units):
                obs[j] = self._env.observation(j, prev)
                if warm:
                    a = float(self._rng.uniform())
                else:
                    model.policy.set_training_mode(False)
                    with torch.no_grad():
                        scaled = float(model.actor(torch.as_tensor(obs[j][None]))[0, 0])  # tanh output in [-1, 1]
                    a = float(np.clip((scaled + 1) / 2 + self._rng.normal(0.0, sigma), 0.0, 1.0))
                actions[j] = a
                prev = a
        from mpsearch.explorers._haq_env import action_to_index

        sampled = [action_to_index(a, len(u.keys)) for a, u in zip(actions, self.space.units)]
        best = self.best()
        local = self._local_proposal(self._episode - self.n_warmup,
                                     None if best is None else self._choices[best.trial_id], self._choices.values())
        if local is not None:  # a local improvement episode: its actions are the chosen bins' centres
            sampled = local
            prev = 0.0
            for j, (k, u) in enumerate(zip(local, self.space.units)):
                obs[j] = self._env.observation(j, prev)
                actions[j] = prev = (k + 0.5) / len(u.keys)
        choice = self.space.repair(sampled)
        self._choices[self._episode] = tuple(choice)
        trial_id = self._episode
        plan = self.space.plan(choice, solver="rl-ddpg", status="sampled",
                               meta={"trial_id": trial_id, "repaired": choice != sampled, "local": local is not None})
        self._episode += 1
        self._pending[trial_id] = plan
        self._episode_data[trial_id] = (obs, actions)
        return Trial(trial_id, plan)

    def _reward(self, metrics: Mapping[str, float]) -> float:
        name, direction = self.objectives[0]
        if name == "omega":
            # log scale: a 1% better omega is worth about as much near the optimum as far from it
            span = self._omega_hi - self._omega_lo
            eps = 1e-3 * span if span > 0 else 1.0
            excess = max(float(metrics["omega"]) - self._omega_lo, 0.0)
            value = math.log((span + eps) / (excess + eps)) / math.log((span + eps) / eps)
            return value if direction == "minimize" else -value
        return (1.0 if direction == "maximize" else -1.0) * self.reward_scale * float(metrics[name])

    def tell(self, trial_id: int, metrics: Mapping[str, float] | None, failed: bool = False) -> None:
        plan = self._take_pending(trial_id)
        obs, actions = self._episode_data.pop(int(trial_id))
        merged = self._complete(plan, metrics, failed)
        self._history.append(Evaluation(int(trial_id), plan, merged, bool(failed)))
        reward = min(self._rewards, default=0.0) if failed else self._reward(merged)
        self._rewards.append(reward)
        n_units = self.space.n_units
        if not n_units:
            return
        model = self._agent()
        if self._baseline is None:
            self._baseline = reward
        centred = reward - self._baseline
        self._baseline += self.moving_alpha * (reward - self._baseline)
        for j in range(n_units):
            done = j == n_units - 1
            model.replay_buffer.add(obs[j][None], obs[j + 1][None], np.array([[2 * actions[j] - 1]], dtype=np.float32),
                                    np.array([centred]), np.array([done]), [{}])
        if self._episode >= self.n_warmup and model.replay_buffer.size() >= self.batch_size:
            with self._own_rng():
                model.train(gradient_steps=n_units, batch_size=self.batch_size)

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "agent": "stable-baselines3 DDPG", "n_warmup": self.n_warmup,
                "noise_init": self.noise_init, "noise_decay": self.noise_decay, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "net_arch": list(self.net_arch)}
