"""Contract every explorer must pass (the registered ones and users' own).

    from mpsearch.testing.explorers import check_explorer
    check_explorer(lambda table, **kw: MyExplorer(table, **kw))   # raises ContractFailure

or, in pytest, one test per check::

    @pytest.mark.parametrize("check", sorted(EXPLORER_CHECKS))
    def test_my_explorer(check):
        run_check(check, my_factory)

A factory is ``factory(table, **options) -> Explorer`` accepting the base options
(``budgets``, ``pins``, ``seed``, ``n_trials``, ``objectives``). The checks: the same seed and
the same told metrics give the same plans; every plan handed out covers every layer and
meets the budgets; tied layers share a candidate and pinned layers keep their pin; a failed
evaluation is accepted, recorded and counted; unknown or repeated trial ids are refused;
``ask`` returns None after ``n_trials``. Also here: seeded random tables and a brute-force
optimum for tests that compare explorers with the exact answer.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.errors import ConfigError
from mpsearch.testing.profiles import ContractFailure

Factory = Callable[..., Any]


# -- tables ------------------------------------------------------------------------------------
def random_table(n_layers: int, w_bits: Sequence[int] = (2, 4, 8), seed: int = 0, a_bits: Sequence[int] = (8,),
                 ties: Sequence[Sequence[str]] = ()) -> CostTable:
    """A seeded table shaped like HAWQ's: omega = s_l * 4^-w (+ activation term), size and BOPs.

    Layer ``l{i}`` has ``n_params`` in 1e3..1e5 (log-uniform), MACs = 30 x params, sensitivity
    ``s_l`` log-uniform over 3 decades; size_bytes = n_params x w / 8, bops = MACs x w x a.
    """
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n_layers):
        n_params = float(np.exp(rng.uniform(np.log(1e3), np.log(1e5))))
        sens = float(np.exp(rng.uniform(np.log(1e-3), np.log(1.0))))
        act = float(np.exp(rng.uniform(np.log(1e-4), np.log(1e-1))))
        for w, a in itertools.product(w_bits, a_bits):
            recs.append({"layer": f"l{i}", "w_bits": w, "a_bits": a,
                         "omega": sens * n_params * 4.0 ** (-w) + act * 4.0 ** (-a) * 1e3,
                         "size_bytes": n_params * w / 8, "bops": 30 * n_params * w * a})
    return CostTable.from_records(recs, ties=[list(g) for g in ties])


def brute_force_optimum(table: CostTable, budgets: Mapping[str, float],
                        pins: Mapping[str, Any] | None = None) -> float:
    """Smallest total omega meeting absolute ``budgets`` (every assignment; <= ~1e6 of them)."""
    from mpsearch.explorers._space import SearchSpace

    space = SearchSpace(table, budgets, pins)
    sizes = [len(u.keys) for u in space.units]
    if int(np.prod(sizes, dtype=np.float64)) > 2_000_000:
        raise ConfigError(f"brute_force_optimum: assignments must be <= 2e6, but got {np.prod(sizes, dtype=np.float64):.3g}")
    best = np.inf
    for choice in itertools.product(*(range(n) for n in sizes)):
        if space.is_feasible(choice):
            best = min(best, table.totals(space.rows(choice))["omega"])
    return float(best)


def slow_proxy(plan: BitPlan, delay_s: float = 0.02) -> dict[str, float]:
    """An evaluate() for worker tests: waits, then reports the evaluating process id."""
    time.sleep(delay_s)
    return {"pid": float(os.getpid())}


# -- checks ------------------------------------------------------------------------------------
def _contract_table() -> tuple[CostTable, dict[str, Any], dict[str, str]]:
    table = random_table(6, (2, 4, 8), seed=3, ties=[["l1", "l3"]])
    return table, {"size_bytes": "35%"}, {"l5": "w8a8"}


def _run(explorer: Any, n: int, fail_every: int = 0) -> list[BitPlan]:
    plans = []
    for k in range(n):
        trial = explorer.ask()
        if trial is None:
            break
        plans.append(trial.plan)
        if fail_every and k % fail_every == fail_every - 1:
            explorer.tell(trial.id, None, failed=True)
        else:
            explorer.tell(trial.id, {})
    return plans


def check_deterministic(factory: Factory, n_trials: int = 12) -> None:
    """Same seed, same told metrics -> the same plans in the same order."""
    table, budgets, pins = _contract_table()
    a = _run(factory(table, budgets=budgets, pins=pins, seed=7, n_trials=n_trials), n_trials)
    b = _run(factory(table, budgets=budgets, pins=pins, seed=7, n_trials=n_trials), n_trials)
    keys = lambda ps: [tuple(p[n].key for n in table.layers) for p in ps]  # noqa: E731
    if keys(a) != keys(b):
        raise ContractFailure(f"contract 'deterministic': two explorers with seed 7 gave different plans: "
                              f"{keys(a)[:3]} vs {keys(b)[:3]}")
    if len(set(keys(a))) < 2:
        raise ContractFailure("contract 'deterministic': the explorer must explore, but every plan was the same")


def check_feasible_ties_pins(factory: Factory, n_trials: int = 15) -> None:
    """Every plan covers every layer, meets the budgets, keeps ties and pins."""
    from mpsearch.explorers._space import SearchSpace

    table, budgets, pins = _contract_table()
    space = SearchSpace(table, budgets, pins)
    for plan in _run(factory(table, budgets=budgets, pins=pins, seed=1, n_trials=n_trials), n_trials):
        if list(plan.layers) != list(table.layers):
            raise ContractFailure(f"contract 'feasible': a plan must cover every layer in order, but got {list(plan.layers)}")
        if not space.plan_is_feasible(plan):
            raise ContractFailure(f"contract 'feasible': plan {plan.to_dict()['layers']} exceeds budgets {budgets}")
        if plan["l1"] != plan["l3"]:
            raise ContractFailure(f"contract 'ties': tied l1/l3 must match, but got {plan['l1'].key}/{plan['l3'].key}")
        if plan["l5"].key != "w8a8":
            raise ContractFailure(f"contract 'pins': l5 must stay w8a8, but got {plan['l5'].key}")


def check_failed_evaluations(factory: Factory, n_trials: int = 9) -> None:
    """``tell(id, None, failed=True)`` is accepted, recorded and counted; ask stops at n_trials."""
    table, budgets, _ = _contract_table()
    ex = factory(table, budgets=budgets, seed=2, n_trials=n_trials)
    plans = _run(ex, n_trials + 5, fail_every=3)
    if len(plans) != n_trials:
        raise ContractFailure(f"contract 'failed': ask must stop after n_trials={n_trials} (failed ones counted), "
                              f"but handed out {len(plans)}")
    res = ex.result()
    if res.n_evaluations != n_trials or res.n_failed != n_trials // 3:
        raise ContractFailure(f"contract 'failed': result must count {n_trials} evaluations, {n_trials // 3} failed, "
                              f"but got {res.n_evaluations}, {res.n_failed}")
    best_id = None if res.best is None else res.best.meta.get("trial_id")
    if best_id is None or any(e.failed for e in res.evaluations if e.trial_id == best_id):
        raise ContractFailure("contract 'failed': best must be a successful evaluation")


def check_trial_ids(factory: Factory) -> None:
    """Telling an unknown id, or the same id twice, raises ConfigError."""
    table, budgets, _ = _contract_table()
    ex = factory(table, budgets=budgets, seed=0, n_trials=5)
    trial = ex.ask()
    for bad in (trial.id + 1000, "x"):
        try:
            ex.tell(bad, {})
        except ConfigError:
            pass
        else:
            raise ContractFailure(f"contract 'trial_ids': tell({bad!r}) of a trial never asked must raise ConfigError")
    ex.tell(trial.id, {})
    try:
        ex.tell(trial.id, {})
    except ConfigError:
        return
    raise ContractFailure("contract 'trial_ids': telling the same trial twice must raise ConfigError")


#: Check name -> function(factory).
EXPLORER_CHECKS: dict[str, Callable[[Factory], None]] = {
    "deterministic": check_deterministic,
    "feasible_ties_pins": check_feasible_ties_pins,
    "failed_evaluations": check_failed_evaluations,
    "trial_ids": check_trial_ids,
}


def run_check(name: str, factory: Factory) -> None:
    """Run one named check."""
    EXPLORER_CHECKS[name](factory)


def check_explorer(factory: Factory) -> None:
    """Run every check; raise :class:`ContractFailure` on the first broken one."""
    for fn in EXPLORER_CHECKS.values():
        fn(factory)
