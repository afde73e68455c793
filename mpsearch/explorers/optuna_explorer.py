"""Optuna explorer: one categorical parameter per free unit, single- or multi-objective.

The only module of mpsearch that imports :mod:`optuna` (lazily, on first use).

* Parameters: one ``suggest_categorical(unit name, candidate keys)`` per free unit (a tie
  group shares one parameter; pinned layers have none). The sampled plan is repaired to
  meet the budgets (see :mod:`mpsearch.explorers._space`) and the repaired plan is the one
  evaluated and told; the sampler thus learns the objective of "sample, then repair".
* Local improvement (``local_search``, default 0.5; single objective): after the sampler's
  warm-up, up to that share of the trials are neighbours of the best trial
  (:mod:`mpsearch.explorers._local`), enqueued with ``study.enqueue_trial`` (tagged
  ``mpsearch:local``) so they are ordinary, counted trials the sampler also learns from.
* Samplers (:data:`SAMPLERS`) are built with explicit arguments, since Optuna 5 changed
  TPE's defaults: ``tpe`` (multivariate, constant liar for parallel workers),
  ``nsgaii``, ``random``. ``sampler="auto"`` picks ``tpe`` for one objective and
  ``nsgaii`` for several.
* Storage: ``storage=`` an Optuna storage URL (``postgresql://...``, ``sqlite:///...``) or
  storage object; otherwise a journal file ``<run_dir>/optuna.journal``; otherwise memory.
  Studies are loaded if they exist, so a new explorer on the same storage resumes.
* Trial cap, exact across workers: ``n_trials`` counts trials that hold a slot: complete,
  running, or failed evaluations. After ``study.ask()`` creates trial number ``k``, the
  explorer counts slot-holding trials numbered below ``k``; if there are already
  ``n_trials`` the new trial is told FAIL, tagged ``mpsearch:surplus``, never evaluated,
  and ``ask`` returns None. Optuna's storages create trials one at a time (RDB: row lock
  on the study; journal: one append-only log), so every trial numbered below ``k`` is
  visible to the worker that got ``k``, and the count of evaluated trials ends at exactly
  ``n_trials`` however many workers share the study.
* Resume: trials left RUNNING by a killed process hold a slot for ever; an explorer made
  with ``fail_running=True`` marks them FAIL (tagged ``mpsearch:stale``, not counted) when
  it opens the study. Only do that when no other worker is live on the study:
  :func:`mpsearch.explorers.search` does it once, before starting its workers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

from mpsearch.core.cost_table import CostTable
from mpsearch.errors import ConfigError, rule_error, unknown_name
from mpsearch.explorers._base import Explorer
from mpsearch.explorers._result import Evaluation, Trial

_SURPLUS, _STALE, _FAILED = "mpsearch:surplus", "mpsearch:stale", "mpsearch:failed"
_KEYS, _METRICS, _SPACE = "mpsearch:keys", "mpsearch:metrics", "mpsearch:space"
_LOCAL = "mpsearch:local"  # trial proposed by the local improvement step, not the sampler
_TPE_STARTUP, _NSGA_POPULATION = 10, 50


def _tpe(seed: int, options: Mapping[str, Any]) -> Any:
    import optuna

    kw: dict[str, Any] = dict(seed=seed, n_startup_trials=_TPE_STARTUP, n_ei_candidates=24, multivariate=True,
                              group=False, constant_liar=True)
    kw.update(options)
    return optuna.samplers.TPESampler(**kw)


def _nsgaii(seed: int, options: Mapping[str, Any]) -> Any:
    import optuna

    kw: dict[str, Any] = dict(seed=seed, population_size=_NSGA_POPULATION, mutation_prob=None, crossover_prob=0.9,
                              swapping_prob=0.5)
    kw.update(options)
    return optuna.samplers.NSGAIISampler(**kw)


def _random(seed: int, options: Mapping[str, Any]) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed, **options)


#: Sampler name -> factory(seed, options) with the defaults written out.
SAMPLERS: dict[str, Callable[[int, Mapping[str, Any]], Any]] = {"tpe": _tpe, "nsgaii": _nsgaii, "random": _random}


class OptunaExplorer(Explorer):
    """Optuna ask/tell over the per-unit candidate choice.

    Args:
        table, budgets, objectives, pins, layers, seed, n_trials, repair: see
            :class:`~mpsearch.explorers.Explorer`.
        sampler: ``"auto"``, ``"tpe"``, ``"nsgaii"`` or ``"random"``.
        sampler_options: keyword arguments that override the sampler defaults.
        storage: Optuna storage URL or object; default: journal file in ``run_dir``.
        run_dir: folder for ``optuna.journal`` when ``storage`` is None.
        study_name: study to create or resume.
        fail_running: mark trials left RUNNING in the storage as FAIL when opening it.
        worker_index: offset added to the seed so parallel workers sample differently.
    """

    name = "optuna"
    supports_workers = True

    def __init__(self, table: CostTable, *, sampler: str = "auto", sampler_options: Mapping[str, Any] | None = None,
                 storage: Any = None, run_dir: str | os.PathLike[str] | None = None, study_name: str = "mpsearch",
                 fail_running: bool = False, worker_index: int = 0, **base: Any) -> None:
        super().__init__(table, **base)
        if sampler == "auto":
            sampler = "nsgaii" if self.is_multi_objective else "tpe"
        if sampler not in SAMPLERS:
            raise unknown_name("sampler", sampler, SAMPLERS, "optuna explorer")
        if not isinstance(study_name, str) or not study_name:
            raise rule_error("optuna explorer", "study_name", "a non-empty string", study_name)
        self.sampler_name = sampler
        self.sampler_options = dict(sampler_options or {})
        self.storage = storage
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.study_name = study_name
        self.fail_running = bool(fail_running)
        self.worker_index = int(worker_index)
        self._study: Any = None
        self._trials: dict[int, Any] = {}
        self._exhausted = False

    # -- storage -----------------------------------------------------------------------------
    def storage_description(self) -> str:
        if isinstance(self.storage, str):
            return self.storage.split("@")[-1] if "://" in self.storage else self.storage  # no password
        if self.storage is not None:
            return type(self.storage).__name__
        return str(self.run_dir / "optuna.journal") if self.run_dir else "memory"

    def _make_storage(self) -> Any:
        import optuna

        if self.storage is not None:
            return self.storage
        if self.run_dir is None:
            return optuna.storages.InMemoryStorage()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = str(self.run_dir / "optuna.journal")
        # open-lock (an O_EXCL lock file) works on network file systems too
        backend = optuna.storages.journal.JournalFileBackend(path, lock_obj=optuna.storages.journal.JournalFileOpenLock(path))
        return optuna.storages.JournalStorage(backend)

    @property
    def study(self) -> Any:
        """The Optuna study (created or loaded on first use)."""
        if self._study is None:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            sampler = SAMPLERS[self.sampler_name](self.seed + self.worker_index, self.sampler_options)
            directions = [d for _, d in self.objectives]
            study = optuna.create_study(storage=self._make_storage(), sampler=sampler, study_name=self.study_name,
                                        directions=directions, load_if_exists=True)
            stored = [d.name.lower() for d in study.directions]
            if stored != directions:
                raise ConfigError(f"optuna explorer: study {self.study_name!r} directions must match the objectives "
                                  f"{directions}, but the stored study has {stored}")
            fingerprint = self.space.fingerprint()
            found = study.user_attrs.get(_SPACE)
            if found is None:
                study.set_user_attr(_SPACE, fingerprint)
                study.set_user_attr("mpsearch:objectives", [list(o) for o in self.objectives])
            elif found != fingerprint:
                raise ConfigError(f"optuna explorer: study {self.study_name!r} must have been made for the same table, "
                                  f"ties, pins and budgets (space {fingerprint}), but it holds space {found}")
            if self.fail_running:
                from optuna.trial import TrialState

                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
                    study._storage.set_trial_user_attr(t._trial_id, _STALE, True)
                    study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            self._study = study
        return self._study

    # -- trial accounting --------------------------------------------------------------------
    @staticmethod
    def _holds_slot(t: Any) -> bool:
        from optuna.trial import TrialState

        if t.state == TrialState.FAIL:
            return bool(t.user_attrs.get(_FAILED))
        return t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)

    def _slots(self, below: int | None = None) -> int:
        trials = self.study.get_trials(deepcopy=False)
        return sum(1 for t in trials if (below is None or t.number < below) and self._holds_slot(t))

    # -- ask / tell --------------------------------------------------------------------------
    def ask(self) -> Trial | None:
        from optuna.trial import TrialState

        if self._exhausted:
            return None
        study = self.study
        if self.n_trials is not None and self._slots() >= self.n_trials:
            self._exhausted = True
            return None
        self._enqueue_local(study)
        trial = study.ask()
        if self.n_trials is not None and self._slots(below=trial.number) >= self.n_trials:
            trial.set_user_attr(_SURPLUS, True)
            study.tell(trial, state=TrialState.FAIL)
            self._exhausted = True
            return None
        sampled = [self.space.units[j].keys.index(trial.suggest_categorical(u.name, list(u.keys)))
                   for j, u in enumerate(self.space.units)]
        choice = self.space.repair(sampled)
        keys = self.space.keys_of(choice)
        trial.set_user_attr(_KEYS, keys)
        trial.set_user_attr("mpsearch:repaired", choice != sampled)
        plan = self._plan(keys, trial.number, choice != sampled, bool(trial.user_attrs.get(_LOCAL)))
        self._pending[trial.number] = plan
        self._trials[trial.number] = trial
        return Trial(trial.number, plan)

    def _warmup_trials(self) -> int:
        if self.sampler_name == "tpe":
            return int(self.sampler_options.get("n_startup_trials", _TPE_STARTUP))
        if self.sampler_name == "nsgaii":
            return int(self.sampler_options.get("population_size", _NSGA_POPULATION))
        return 0

    def _enqueue_local(self, study: Any) -> None:
        """Queue a local improvement of the best trial when it is its turn (see ``_local``)."""
        from optuna.trial import TrialState

        if self.local_search <= 0 or self.is_multi_objective:
            return
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE and _KEYS in t.user_attrs]
        if not done:
            return
        sign = 1.0 if self.objectives[0][1] == "minimize" else -1.0
        best = min(done, key=lambda t: (sign * t.values[0], t.number))
        tried = [tuple(self.space.choice_from_keys(t.user_attrs[_KEYS])) for t in trials if _KEYS in t.user_attrs]
        choice = self._local_proposal(len(trials) - self._warmup_trials(),
                                      self.space.choice_from_keys(best.user_attrs[_KEYS]), tried)
        if choice is not None:
            study.enqueue_trial(self.space.keys_of(choice), user_attrs={_LOCAL: True})

    def _plan(self, keys: Mapping[str, str], number: int, repaired: bool, local: bool = False) -> Any:
        choice = self.space.choice_from_keys(keys)
        return self.space.plan(choice, solver=f"optuna-{self.sampler_name}", status="sampled",
                               meta={"trial_id": number, "repaired": bool(repaired), "local": bool(local)})

    def tell(self, trial_id: int, metrics: Mapping[str, float] | None, failed: bool = False) -> None:
        from optuna.trial import TrialState

        plan = self._take_pending(trial_id)
        trial = self._trials.pop(int(trial_id))
        merged = self._complete(plan, metrics, failed)
        trial.set_user_attr(_METRICS, merged)
        if failed:
            trial.set_user_attr(_FAILED, True)
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, [merged[n] for n, _ in self.objectives])

    # -- results -----------------------------------------------------------------------------
    def evaluations(self) -> list[Evaluation]:
        """Every evaluated trial in the storage (all workers and earlier runs)."""
        from optuna.trial import TrialState

        out = []
        for t in self.study.get_trials(deepcopy=False):
            failed = t.state == TrialState.FAIL and bool(t.user_attrs.get(_FAILED))
            if not (t.state == TrialState.COMPLETE or failed) or _KEYS not in t.user_attrs:
                continue
            plan = self._plan(t.user_attrs[_KEYS], t.number, bool(t.user_attrs.get("mpsearch:repaired")),
                              bool(t.user_attrs.get(_LOCAL)))
            out.append(Evaluation(t.number, plan, dict(t.user_attrs.get(_METRICS, {})), failed))
        return sorted(out, key=lambda e: e.trial_id)

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "sampler": self.sampler_name, "sampler_options": self.sampler_options,
                "study_name": self.study_name, "storage": self.storage_description()}
