"""Optuna explorer: optimum on a small table, exact trial counts across workers, resume,
Pareto sets, and a real PostgreSQL storage when MPSEARCH_TEST_POSTGRES_URL is set."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import optuna
import pytest

from mpsearch import ConfigError
from mpsearch.allocation import allocate
from mpsearch.explorers import search
from mpsearch.explorers._result import dominates
from mpsearch.explorers._space import SearchSpace
from mpsearch.testing.explorers import brute_force_optimum, random_table, slow_proxy

BUDGET = {"size_bytes": "40%"}


def test_tpe_within_1pct_of_ilp_optimum_in_60_trials():
    table = random_table(10, (2, 4, 8), seed=11)
    opt = allocate(table, budgets=BUDGET, gap_rel=0).objective  # exact ILP (checked against brute force below)
    res = search(table, "optuna", BUDGET, n_trials=60, seed=0)
    assert res.n_evaluations == 60
    assert res.best_metrics["omega"] <= opt * 1.01
    space = SearchSpace(table, BUDGET)
    assert all(space.plan_is_feasible(e.plan) for e in res.evaluations)


TWO = {"size_bytes": "50%", "bops": "40%"}  # a_bits 4/8 below: BOPs are not proportional to size


@pytest.mark.parametrize("seed", [0, 1])
def test_tpe_within_1pct_of_ilp_on_20_layers_and_two_budgets_in_100_trials(seed):
    table = random_table(20, (2, 4, 8), seed=21, a_bits=(4, 8))
    opt = allocate(table, budgets=TWO, gap_rel=0).objective
    res = search(table, "optuna", TWO, n_trials=100, seed=seed)
    assert res.n_evaluations == 100  # local improvement trials are counted like the sampler's
    assert res.best_metrics["omega"] <= opt * 1.01
    space = SearchSpace(table, TWO)
    assert all(space.plan_is_feasible(e.plan) for e in res.evaluations)
    local = [e.trial_id for e in res.evaluations if e.plan.meta["local"]]
    # at most every other trial after the 10 warm-up ones, and only while improving moves exist
    assert 0 < len(local) <= 45 and min(local) >= 10


def test_two_budget_ilp_used_above_matches_brute_force():
    table = random_table(5, (2, 4, 8), seed=21, a_bits=(4, 8))  # 6^5 assignments
    budgets = SearchSpace(table, TWO).budgets
    assert allocate(table, budgets=TWO, gap_rel=0).objective == pytest.approx(brute_force_optimum(table, budgets), rel=1e-12)


def test_ilp_optimum_used_above_matches_brute_force():
    table = random_table(7, (2, 4, 8), seed=11)
    assert allocate(table, budgets=BUDGET, gap_rel=0).objective == pytest.approx(brute_force_optimum(table, BUDGET), rel=1e-12)


def _evaluated(storage, study_name="mpsearch"):
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if "mpsearch:metrics" in t.user_attrs]
    surplus = [t for t in trials if t.user_attrs.get("mpsearch:surplus")]
    stale = [t for t in trials if t.user_attrs.get("mpsearch:stale")]
    return trials, done, surplus, stale


def _journal(run_dir):
    path = str(run_dir / "optuna.journal")
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))


def test_two_workers_on_one_journal_finish_exactly_n_trials(tmp_path):
    n = 24
    res = search(random_table(8, seed=2), "optuna", BUDGET, evaluate=slow_proxy, n_trials=n, n_workers=2,
                 run_dir=tmp_path, seed=1)
    ids = [e.trial_id for e in res.evaluations]
    assert res.n_evaluations == n and len(set(ids)) == n
    assert len({e.metrics["pid"] for e in res.evaluations}) == 2  # both workers evaluated trials
    trials, done, surplus, _ = _evaluated(_journal(tmp_path))
    assert len(done) == n
    # every trial number is used once: evaluated ones plus at most one surplus per worker
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert len(trials) == n + len(surplus) and len(surplus) <= 2


def test_rerun_resumes_to_n_trials_keeping_finished_ones(tmp_path):
    table = random_table(8, seed=4)
    first = search(table, "optuna", BUDGET, n_trials=8, run_dir=tmp_path, seed=3)
    second = search(table, "optuna", BUDGET, n_trials=20, run_dir=tmp_path, seed=3)
    assert second.n_evaluations == 20
    assert [e.plan.layers for e in second.evaluations[:8]] == [e.plan.layers for e in first.evaluations]
    assert second.best_metrics["omega"] <= first.best_metrics["omega"]
    with pytest.raises(ConfigError, match="same table"):
        search(random_table(8, seed=5), "optuna", BUDGET, n_trials=21, run_dir=tmp_path)


def test_killed_search_resumes_from_its_journal(tmp_path):
    n = 30
    code = textwrap.dedent(f"""
        from mpsearch.explorers import search
        from mpsearch.testing.explorers import random_table, slow_proxy
        search(random_table(8, seed=6), "optuna", {BUDGET!r}, evaluate=slow_proxy, n_trials={n},
               run_dir={str(tmp_path)!r}, seed=2)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    done = []
    while time.time() < deadline and len(done) < 3:
        time.sleep(0.5)
        if (tmp_path / "optuna.journal").exists():
            try:
                _, done, _, _ = _evaluated(_journal(tmp_path))
            except KeyError:  # study not created yet
                pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, before, _, _ = _evaluated(_journal(tmp_path))
    assert 3 <= len(before) < n
    res = search(random_table(8, seed=6), "optuna", BUDGET, n_trials=n, run_dir=tmp_path, seed=2)
    assert res.n_evaluations == n
    kept = {e.trial_id: e.plan for e in res.evaluations}
    for t in before:  # finished trials survive the kill unchanged
        plan = kept[t.number]
        assert {u: plan[u].key for u in t.user_attrs["mpsearch:keys"]} == t.user_attrs["mpsearch:keys"]
    _, _, _, stale = _evaluated(_journal(tmp_path))
    assert len(stale) <= 1  # the trial running at the kill is failed, not counted


def test_multi_objective_pareto_is_feasible_and_non_dominated():
    table = random_table(8, seed=8)
    objectives = {"omega": "minimize", "size_bytes": "minimize"}
    budgets = {"bops": "70%"}
    res = search(table, "optuna", budgets, objectives=objectives, n_trials=60, seed=0,
                 sampler_options={"population_size": 12})
    assert res.meta["sampler"] == "nsgaii"
    assert len(res.pareto) >= 3
    space = SearchSpace(table, budgets)
    points = []
    for plan in res.pareto:
        assert space.plan_is_feasible(plan)
        tot = table.totals(table.rows_for_plan(plan))
        points.append((tot["omega"], tot["size_bytes"]))
    for i, p in enumerate(points):
        for j, q in enumerate(points):
            assert i == j or not dominates(q, p)
    # and the set is complete: every evaluated point is matched or dominated by a Pareto point
    for e in res.evaluations:
        x = (e.metrics["omega"], e.metrics["size_bytes"])
        assert any(p == x or dominates(p, x) for p in points)


@pytest.mark.skipif(not os.environ.get("MPSEARCH_TEST_POSTGRES_URL"), reason="MPSEARCH_TEST_POSTGRES_URL not set")
def test_postgresql_storage_two_workers_exact_count():
    url = os.environ["MPSEARCH_TEST_POSTGRES_URL"]
    name = f"mpsearch-test-{uuid.uuid4().hex[:8]}"
    n = 16
    res = search(random_table(6, seed=9), "optuna", BUDGET, evaluate=slow_proxy, n_trials=n, n_workers=2,
                 storage=url, study_name=name, seed=4, sampler="random")
    assert res.n_evaluations == n and len({e.trial_id for e in res.evaluations}) == n
    assert res.meta["storage"].startswith("localhost") or "@" not in res.meta["storage"]
    trials, done, surplus, _ = _evaluated(url, name)
    assert len(done) == n and len(trials) == n + len(surplus)
    # resume on the same server: a new search continues to 20
    more = search(random_table(6, seed=9), "optuna", BUDGET, n_trials=20, storage=url, study_name=name, seed=4,
                  sampler="random")
    assert more.n_evaluations == 20
    optuna.delete_study(study_name=name, storage=url)
