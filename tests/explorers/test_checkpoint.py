"""A search writes its best plan so far atomically every N trials: a SIGKILLed ``mpsearch search``
leaves a plan that loads and meets the budget, and the rerun reuses the cached sensitivity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from mpsearch import ConfigError
from mpsearch.core import BitPlan
from mpsearch.explorers import search
from mpsearch.explorers._space import SearchSpace
from mpsearch.testing.explorers import random_table

REPO = Path(__file__).resolve().parents[2]
BUDGET = {"size_bytes": "40%"}


@pytest.mark.parametrize("explorer", ["optuna", "rl"])
def test_best_plan_so_far_is_on_disk_every_n_trials(tmp_path, explorer):
    table = random_table(8, (2, 4, 8), seed=3)
    path = tmp_path / "plan.yaml"
    seen: list[tuple[int, BitPlan | None]] = []  # (trials told before this evaluation, plan on disk)
    told = []

    def evaluate(plan):
        seen.append((len(told), BitPlan.load(path) if path.exists() else None))
        told.append(plan)
        return {}  # the omega proxy

    options = {"n_warmup": 3} if explorer == "rl" else {}
    res = search(table, explorer, BUDGET, evaluate, n_trials=23, seed=0, checkpoint=path, checkpoint_every=5,
                 **options)
    by_id = sorted(res.evaluations, key=lambda e: e.trial_id)
    for n_before, on_disk in seen:
        if n_before < 5:
            assert on_disk is None
            continue
        k = n_before - n_before % 5  # the last checkpoint: after k told trials
        best = min(by_id[:k], key=lambda e: (e.metrics["omega"], e.trial_id))
        info = on_disk.meta["search_checkpoint"]
        assert info["final"] is False and info["best_trial"] == best.trial_id
        assert {n: b.key for n, b in on_disk.layers.items()} == {n: b.key for n, b in best.plan.layers.items()}
        assert info["metrics"]["omega"] == pytest.approx(best.metrics["omega"], rel=1e-12)
    final = BitPlan.load(path)
    assert final.meta["search_checkpoint"]["final"] is True
    assert final.meta["search_checkpoint"]["n_evaluations"] == 23
    assert {n: b.key for n, b in final.layers.items()} == {n: b.key for n, b in res.best.layers.items()}
    assert SearchSpace(table, BUDGET).plan_is_feasible(final)


def test_checkpoint_every_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="checkpoint_every must be"):
        search(random_table(4, seed=1), "optuna", BUDGET, n_trials=3, checkpoint=tmp_path / "p.yaml",
               checkpoint_every=0)


SMALL = {
    "version": 1, "name": "ckpt", "seed": 0, "model": "small_cnn",
    "data": {"source": "digits", "batch_size": 128, "calib_batches": 2},
    "sensitivity": {"method": "fisher", "n_batches": 1, "settings": {"granularity": "per_batch"}},
    "hardware": {"profile": "gap8-pulp-nn", "w_bits": [2, 4, 8], "a_bits": [8]},
    "budgets": {"size_bytes": "uniform:w4a8"},
    "allocation": {"method": "optuna", "n_trials": 10},
    "finetune": {"epochs": 0},
    "validation": {"split": "test", "integer": False},
}


def _cli(recipe: Path, out: Path, n_trials: int) -> list[str]:
    code = textwrap.dedent(f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        from mpsearch.cli import main
        sys.exit(main(["search", "--recipe", {str(recipe)!r}, "--n-trials", "{n_trials}",
                       "--checkpoint-every", "5", "-o", {str(out)!r}, "--quiet"]))
    """)
    return [sys.executable, "-c", code]


def _env(tmp_path: Path) -> dict[str, str]:
    """A fresh cache root for the sensitivity, sharing the trained demo models (not retrained here)."""
    from mpsearch.demo.train import cache_root

    root = tmp_path / "cache"
    root.mkdir()
    for sub in ("demo", "numba"):
        if (cache_root() / sub).exists():
            (root / sub).symlink_to(cache_root() / sub)
    env = dict(os.environ, MPSEARCH_CACHE=str(root))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_sigkilled_search_leaves_a_usable_plan_and_rerun_reuses_sensitivity(tmp_path):
    recipe = tmp_path / "ckpt.yaml"
    recipe.write_text(yaml.safe_dump(SMALL))
    out = tmp_path / "plan.yaml"
    env = _env(tmp_path)
    proc = subprocess.Popen(_cli(recipe, out, 1_000_000), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if out.exists() and BitPlan.load(out).meta["search_checkpoint"]["n_evaluations"] >= 15:
            break  # a few checkpoints have been rewritten in place: kill between (or during) writes
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert "stored in the cache" in err.decode()

    plan = BitPlan.load(out)  # whole and readable after the kill
    info = plan.meta["search_checkpoint"]
    assert info["final"] is False and info["n_evaluations"] >= 15 and info["n_evaluations"] % 5 == 0
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".plan.yaml.")]  # no temp file left

    from mpsearch.pipeline import steps
    from mpsearch.recipe import load_recipe

    prep = steps.prepare(load_recipe(recipe))
    totals = prep.resources.totals(prep.resources.rows_for_plan(plan))
    assert totals["size_bytes"] <= prep.budgets.budget("size_bytes").limit  # uniform W4A8's size
    assert totals["size_bytes"] == pytest.approx(info["metrics"]["size_bytes"], rel=1e-12)
    assert list(plan.layers) == [lay.name for lay in prep.layers]

    cached = list((tmp_path / "cache" / "sensitivity").glob("*.json"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    rerun = subprocess.run(_cli(recipe, out, 12), env=env, capture_output=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    log = rerun.stderr.decode()
    assert "reused from the cache" in log and "stored in the cache" not in log
    assert cached[0].stat().st_mtime_ns == stamp
    final = BitPlan.load(out)
    assert "search_checkpoint" not in final.meta  # the command's own final write replaced the checkpoint
