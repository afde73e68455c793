"""The ``search`` verb: run an explorer's ask/tell loop, in one process or several."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any, Callable, Mapping

from mpsearch.allocation import resolve_budgets  # numpy only: pulp loads lazily
from mpsearch.core.checks import check_int
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.errors import ConfigError, MpsearchError, rule_error
from mpsearch.explorers._base import Explorer, explorer_class, get_explorer
from mpsearch.explorers._checkpoint import DEFAULT_EVERY, Checkpoint
from mpsearch.explorers._result import Evaluation, SearchResult

Evaluate = Callable[[BitPlan], "Mapping[str, float] | None"]


def run_loop(explorer: Explorer, evaluate: Evaluate | None = None,
             progress: Callable[[Evaluation], None] | None = None,
             catch: tuple[type[BaseException], ...] = (), checkpoint: Checkpoint | None = None) -> int:
    """Ask, evaluate, tell until the explorer returns None; returns the trials told here.

    ``evaluate(plan)`` returns metrics (merged over the table's omega and resource totals)
    or None for a failed evaluation; exceptions of the types in ``catch`` are told as
    failed, any other exception is told as failed and then raised. ``checkpoint`` writes
    the best plan so far every N told trials, and at the end (also when an exception stops
    the loop).
    """
    n_told = 0
    finished = False
    try:
        while (trial := explorer.ask()) is not None:
            try:
                metrics = evaluate(trial.plan) if evaluate is not None else {}
            except catch:
                metrics = None
            except BaseException:
                explorer.tell(trial.id, None, failed=True)
                raise
            explorer.tell(trial.id, metrics, failed=metrics is None)
            n_told += 1
            if checkpoint is not None:
                checkpoint.told()
            if progress is not None:
                progress(Evaluation(trial.id, trial.plan, dict(metrics or {}), metrics is None))
        finished = True
    finally:
        if checkpoint is not None:
            checkpoint.write(final=finished)
    return n_told


def _worker(name: str, table: CostTable, options: dict[str, Any], evaluate: Evaluate | None,
            catch: tuple[type[BaseException], ...], checkpoint: tuple[Any, int] | None = None) -> None:
    ex = get_explorer(name, table, **options)
    run_loop(ex, evaluate, catch=catch, checkpoint=None if checkpoint is None else Checkpoint(ex, *checkpoint))


def search(table: CostTable, explorer: str = "optuna", budgets: Any = None, evaluate: Evaluate | None = None, *,
           n_trials: int = 100, n_workers: int = 1, objectives: Any = None, seed: int = 0,
           progress: Callable[[Evaluation], None] | bool | None = None, catch: tuple[type[BaseException], ...] = (),
           fail_running: bool = True, mp_context: str = "spawn", checkpoint: Any = None,
           checkpoint_every: int = DEFAULT_EVERY, **options: Any) -> SearchResult:
    """Search bit plans for ``table`` with an explorer; the verb behind ``mps.search``.

    Args:
        table: the cost table.
        explorer: registered name (``"optuna"``, ``"rl"``).
        budgets: resource -> limit (as :func:`mpsearch.allocate` takes them: ``{"size_bytes": "50%"}``,
            ``uniform:w4a8``, a :class:`~mpsearch.allocation.Budgets`); every evaluated plan meets them.
        evaluate: ``evaluate(plan) -> metrics`` (e.g. validation accuracy, measured
            latency); None uses the omega proxy from the table. Must be picklable
            (a module-level function) when ``n_workers > 1``.
        n_trials: evaluations in total (for RL: episodes). With a persistent storage this
            counts the trials already there, so a rerun resumes up to ``n_trials``.
        n_workers: processes on this machine sharing the storage (Optuna only; needs
            ``run_dir`` or ``storage``).
        objectives: ``{"metric": "minimize"|"maximize"}``; default omega minimized.
        seed: random seed (worker ``i`` uses ``seed + i``).
        progress: callback per told trial, or True for a progress bar (one process only).
        catch: exception types from ``evaluate`` told as failed evaluations.
        fail_running: mark trials left RUNNING by a killed run as failed before starting
            (storage-backed explorers; pass False when joining workers already running
            on other machines).
        mp_context: multiprocessing start method for ``n_workers > 1``.
        checkpoint: a plan file (YAML, or JSON by suffix) that receives the best plan so far,
            atomically, every ``checkpoint_every`` told trials and at the end, so a killed
            search leaves a plan that :meth:`BitPlan.load` reads (its ``meta.search_checkpoint``
            says after how many evaluations, and ``final: false`` until the search ended).
            With several workers the first one writes it (its explorer reads the shared study).
        checkpoint_every: told trials between two writes of ``checkpoint``.
        **options: explorer options (``sampler``, ``storage``, ``run_dir``, ``study_name``,
            ``pins``, ``layers``, ``repair``, RL settings, ...).

    Returns:
        A :class:`SearchResult` over every evaluated trial in the storage.
    """
    check_int(n_workers, "search", "n_workers", min=1)
    cls = explorer_class(explorer)
    budgets = resolve_budgets(budgets, table)  # read once here; explorers and workers get the typed value
    common = dict(options, budgets=budgets, objectives=objectives, seed=seed, n_trials=n_trials)
    if cls.supports_workers:
        common["fail_running"] = False
    start = time.perf_counter()
    if n_workers == 1:
        ex = get_explorer(explorer, table, **{**common, "fail_running": fail_running} if cls.supports_workers else common)
        bar, callback = _progress(progress, n_trials)
        ckpt = None if checkpoint is None else Checkpoint(ex, checkpoint, checkpoint_every)
        try:
            run_loop(ex, evaluate, callback, catch, ckpt)
        finally:
            if bar is not None:
                bar.stop()
        return ex.result(time.perf_counter() - start)
    if not cls.supports_workers:
        raise rule_error("search", "n_workers", f"1 for explorer {explorer!r} (it keeps its state in memory)", n_workers)
    if options.get("storage") is None and options.get("run_dir") is None:
        raise ConfigError("search: n_workers > 1 needs a shared storage: pass run_dir= or storage=, but got neither")
    parent = get_explorer(explorer, table, **{**common, "fail_running": fail_running})
    parent.study  # create the study (and fail stale trials) before any worker opens it  # noqa: B018
    if checkpoint is not None:
        Checkpoint(parent, checkpoint, checkpoint_every)  # checks checkpoint_every before any worker starts
    ctx = multiprocessing.get_context(mp_context)
    procs = [ctx.Process(target=_worker, args=(explorer, table, {**common, "worker_index": i}, evaluate, catch,
                                               (checkpoint, checkpoint_every) if checkpoint is not None and i == 0
                                               else None),
                         name=f"mpsearch-worker-{i}") for i in range(n_workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    bad = [(p.name, p.exitcode) for p in procs if p.exitcode != 0]
    if bad:
        raise MpsearchError(f"search: every worker must exit with code 0, but got {bad}")
    if checkpoint is not None:  # the whole study's best, now that every worker has told
        Checkpoint(parent, checkpoint, checkpoint_every).write(final=True)
    return parent.result(time.perf_counter() - start)


def _progress(progress: Any, n_trials: int) -> tuple[Any, Callable[[Evaluation], None] | None]:
    if progress is None or progress is False:
        return None, None
    if callable(progress):
        return None, progress
    from rich.progress import Progress

    bar = Progress(transient=True)
    task = bar.add_task("search", total=n_trials)
    bar.start()
    return bar, lambda _e: bar.advance(task)
