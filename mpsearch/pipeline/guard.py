"""The guard (issue #21): a plan is never returned when a simple baseline is better on validation data.

After allocating, :func:`guard_plan` evaluates the chosen plan, every uniform plan that meets the
same budgets (so at or below its size) and the greedy baseline (per-layer weight-quantization
MSE x parameters, :func:`mpsearch.allocation.greedy.greedy_plan`). If a baseline scores better,
the candidates the plan took below that baseline's choice are removed and the ILP runs again;
the better of the re-allocated plan and the baseline is returned. ``plan.meta["guard"]`` says
what was compared, on which split, whether the plan changed and why.

A coarse metric ties often (accuracy on 359 images moves in steps of 0.28 points), and on a tie the
plan used to be kept even when a baseline was better on a finer signal. With ``tiebreak`` (the
task's loss on the same split, lower is better: cross-entropy for a classifier), two plans whose
metrics are equal are compared on it instead; it is computed only for plans in a tie, and
``meta["guard"]["decided_by"]`` says which signal decided (``"metric"`` or ``"loss (tie on the
metric)"``) with the losses in ``meta["guard"]["losses"]``.

In the API it is optional (call :func:`guard_plan` with your own ``evaluate``); recipes run it
by default (``allocation.guard: true``), on the validation split, through :func:`guard_step`.

A table with weight-quantization methods (#16): the joint (bits, method) plan is priced by
one-layer figures, which can fail to add up. :func:`guard_step` first compares it with the
bits-only plan (the table's round-to-nearest rows allocated alone) example by example on the
validation split (:func:`methods_test`): the joint plan is kept only when the examples it scores
better outnumber those it scores worse beyond chance (exact two-sided sign test, McNemar's test
for a classifier, at ``alpha`` = 0.05); else the simpler bits-only plan goes on to the guard.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable

from mpsearch.allocation import allocate, uniform_plan
from mpsearch.allocation.greedy import greedy_plan
from mpsearch.allocation.pins import resolve_pins
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.core.profile import Rules
from mpsearch.errors import InfeasibleBudgetError


def _meets(table: CostTable, plan: BitPlan, limits: dict[str, float], pins: dict[int, str]) -> bool:
    rows = table.rows_for_plan(plan)
    tot = table.totals(rows)
    keys_ok = all(plan.layers[table.layers[i]].key == k for i, k in pins.items())
    return keys_ok and all(tot[r] <= lim * (1 + 1e-9) for r, lim in limits.items())


def _baselines(table: CostTable, limits: dict[str, float], pins: dict[int, str],
               greedy: BitPlan | None) -> dict[str, BitPlan]:
    """Label -> every uniform plan that meets the budgets and rules, and the greedy plan."""
    out: dict[str, BitPlan] = {}
    seen = set()
    for cs in table.candidates:
        for c in cs:
            if c.key in seen:
                continue
            seen.add(c.key)
            plan, others = uniform_plan(table, c.w_bits, c.a_bits, key=c.key if c.is_format else None)
            if not others and _meets(table, plan, limits, pins):
                out[f"uniform {c.key}"] = plan
    if greedy is not None and _meets(table, greedy, limits, pins):
        rows = table.rows_for_plan(greedy)  # totals and objective on the real table
        out["greedy (weight MSE)"] = table.plan_from_rows(rows, solver="greedy", status="given", meta=dict(greedy.meta))
    return out


def _without(table: CostTable, plan: BitPlan, better: BitPlan) -> tuple[CostTable, list[str]]:
    """``table`` less the candidates ``plan`` took that are smaller than ``better``'s in that layer (per tie group)."""
    size = "size_bytes" if "size_bytes" in table.resources else table.resource_names[0]
    drop: dict[str, str] = {}
    for name in table.layers:
        mine, theirs = plan.layers[name].key, better.layers[name].key
        if table.resources[size][table.row_of(name, mine)] < table.resources[size][table.row_of(name, theirs)]:
            drop[name] = mine
    for group in table.ties:  # tied layers keep the same candidates
        key = next((drop[n] for n in group if n in drop), None)
        if key is not None:
            drop.update({n: key for n in group})
    recs = [r for r in table.to_records() if drop.get(r["layer"]) != _key(table, r)]
    return CostTable.from_records(recs, ties=table.ties, where="guard"), [f"{n}:{k}" for n, k in drop.items()]


def _key(table: CostTable, rec: dict[str, Any]) -> str:
    i = table.index_of(rec["layer"])
    return next(c.key for c in table.candidates[i] if c.w_bits == rec["w_bits"] and c.a_bits == rec["a_bits"]
                and c.w_granularity == rec.get("w_granularity", c.w_granularity) and c.group_size == rec.get("group_size")
                and c.w_zero_point == rec.get("w_zero_point", False) and c.a_mode == rec.get("a_mode", "static")
                and c.method == rec.get("method", "rtn"))


def guard_plan(plan: BitPlan, table: CostTable, budgets: Any, evaluate: Callable[[BitPlan], float], *,
               higher_is_better: bool, greedy: BitPlan | None = None, rules: Rules | None = None,
               solver: str = "cbc", gap_rel: float | None = None, split: str = "val",
               tiebreak: Callable[[BitPlan], float] | None = None, tie_margin: float = 0.0,
               extra: dict[str, BitPlan] | None = None) -> BitPlan:
    """``plan``, or a better plan when a baseline beats it on ``evaluate`` (see the module docstring).

    Args:
        plan: the allocated plan.
        table: the cost table it was allocated on.
        budgets: the budgets it was allocated under (resolved against ``table``).
        evaluate: plan -> metric on validation data (quantize and score it).
        higher_is_better: the metric's direction (accuracy: True; bits per byte: False).
        greedy: the greedy baseline plan (None: not compared).
        rules: the profile's placement rules.
        solver, gap_rel: for the re-allocation.
        split: the data split ``evaluate`` reads (named in the metadata).
        tiebreak: plan -> a finer signal on the same split, lower is better (the task's loss);
            decides between plans whose metrics are equal (None: a tie keeps the plan).
        tie_margin: metrics at most this far apart count as a tie (with ``tiebreak``): for a
            count such as accuracy on n images, 1/n makes a one-image difference a tie.
        extra: label -> more baselines (e.g. the bits-only plan of a table with methods), each
            compared when it meets the budgets and rules.

    Returns:
        The plan to use, with ``meta["guard"]``: ``changed``, ``reason``, ``chosen`` (a label),
        ``split``, ``values`` (label -> metric of every plan evaluated), ``decided_by`` and
        ``losses`` (label -> tie-break loss of the plans that tied).
    """
    from mpsearch.allocation import resolve_budgets

    resolved = resolve_budgets(budgets, table, where="guard")
    limits = {b.resource: b.absolute(*table.extremes(b.resource)) for b in resolved.entries}
    pins = resolve_pins(table, None, rules)
    plans: dict[str, BitPlan] = {"mixed": plan}
    values = {"mixed": evaluate(plan)}
    bases = _baselines(table, limits, pins, greedy)
    bases.update({k: p for k, p in (extra or {}).items() if _meets(table, p, limits, pins)})
    plans.update(bases)
    values.update({label: evaluate(p) for label, p in bases.items()})
    losses: dict[str, float] = {}
    ties: list[str] = []

    def loss(label: str) -> float:
        if label not in losses:
            losses[label] = float(tiebreak(plans[label]))  # type: ignore[misc]
        return losses[label]

    def better(a: str, b: str) -> bool:
        """Plan ``a`` strictly better than ``b``: on the metric, or on the loss when the metrics tie."""
        va, vb = values[a], values[b]
        if abs(va - vb) > tie_margin * (1 + 1e-9) or tiebreak is None:
            return va > vb if higher_is_better else va < vb
        ties.append(f"{a} / {b}")
        return loss(a) < loss(b)

    def tie(a: str, b: str) -> bool:
        return abs(values[a] - values[b]) <= tie_margin * (1 + 1e-9)

    best = None
    for label in bases:  # the best baseline; full ties go to the first (uniform before greedy)
        if best is None or better(label, best):
            best = label
    info: dict[str, Any] = {"split": split, "higher_is_better": higher_is_better, "changed": False, "chosen": "mixed"}

    def done(out: BitPlan, on_loss: bool) -> BitPlan:
        info["decided_by"] = "loss (tie on the metric)" if on_loss else "metric"
        extra = {"losses": dict(losses), "ties": list(ties)} if losses else {}
        return replace(out, meta={**out.meta, "guard": {**info, "tie_margin": tie_margin, "values": values, **extra}})

    if best is None or not better(best, "mixed"):
        tied = best is not None and tiebreak is not None and tie(best, "mixed")
        how = (f"; on the tie its {split} loss ({loss('mixed'):.6g}) is at most {best}'s ({loss(best):.6g})"
               if tied else "")
        info["reason"] = (f"the mixed plan ({values['mixed']:.6g}) is at least as good as every baseline "
                          f"that meets the budgets ({', '.join(bases) or 'none'}){how}")
        return done(plan, tied)
    tied = tiebreak is not None and tie(best, "mixed")
    sub, removed = _without(table, plan, bases[best])
    kwargs = {} if gap_rel is None else {"gap_rel": gap_rel}
    again = allocate(sub, resolved, rules=rules, solver=solver, **kwargs)
    plans["mixed, re-allocated"] = again
    values["mixed, re-allocated"] = evaluate(again)
    if better(best, "mixed, re-allocated"):
        chosen, out = best, bases[best]
    else:
        chosen, out = "mixed, re-allocated", again
    why = (f"tied with the mixed plan's {values['mixed']:.6g} on the metric (margin {tie_margin:.3g}) and had the lower {split} loss "
           f"({loss(best):.6g} against {loss('mixed'):.6g})" if tied
           else f"against the mixed plan's {values['mixed']:.6g}")
    info.update(changed=True, chosen=chosen, removed=removed,
                reason=(f"{best} scored {values[best]:.6g} {why} on the "
                        f"{split} split; re-allocating without {len(removed)} candidates the plan took below it "
                        f"scored {values['mixed, re-allocated']:.6g}; kept: {chosen}"))
    return done(out, tied or (tiebreak is not None and tie(best, "mixed, re-allocated")))


def guard_step(prep: Any, table: CostTable, plan: BitPlan, alpha: float | None = None) -> BitPlan:
    """:func:`guard_plan` of a recipe run: PTQ on the calibration batches, scored on the validation split.

    With an accuracy metric, plans one validation example apart or closer tie (``tie_margin`` =
    1 / validation examples) and the validation loss decides. A table with methods: the joint
    plan must first beat the bits-only plan by :func:`methods_test` at ``alpha`` (None:
    :data:`METHODS_ALPHA`), else the bits-only plan (and its round-to-nearest table) is guarded;
    ``meta["guard"]["methods_test"]`` records the test."""
    from mpsearch.pipeline import steps
    from mpsearch.sensitivity.calibrate import weight_error_table

    val = prep.inputs.val
    extra = bits_only(table, prep.budgets, prep.profile.rules, prep.recipe.allocation.solver)
    test = None
    if extra:
        def scores(p: BitPlan) -> list[float]:
            return per_example_scores(steps.quantize_plan(prep, p), prep.inputs.task, val)

        test = methods_test(plan, extra[BITS_ONLY], scores, METHODS_ALPHA if alpha is None else alpha)
        if test["kept"] == BITS_ONLY:  # the simpler plan, guarded on its own (round-to-nearest) table
            plan, table, extra = extra[BITS_ONLY], rtn_table(table), {}
    # accuracy moves in steps of one example, and a one-example lead on validation did not carry to test
    # over 3 trained models x splits of the demo CNNs (docs/BENCHMARKS.md #21): such a lead is a tie,
    # and the validation loss decides
    margin = 1.0 / max(sum(len(y) for _, y in val), 1) if prep.inputs.task.metric == "accuracy" else 0.0
    greedy = greedy_plan(weight_error_table(prep.inputs.model, table, prep.profile), prep.budgets, prep.profile.rules)
    loss_fn = prep.inputs.task.loss_fn
    out = guard_plan(plan, table, prep.budgets, lambda p: steps.metric(prep, steps.quantize_plan(prep, p), val),
                     higher_is_better=prep.inputs.task.higher_is_better, greedy=greedy, rules=prep.profile.rules,
                     solver=prep.recipe.allocation.solver, gap_rel=prep.recipe.allocation.gap_rel,
                     tiebreak=lambda p: mean_loss(steps.quantize_plan(prep, p), loss_fn, val), tie_margin=margin,
                     extra=extra)
    if test is None:
        return out
    g = out.meta["guard"]  # the report and the printed line show the reason: it starts with the test
    return replace(out, meta={**out.meta, "guard": {**g, "methods_test": test,
                                                    "reason": f"{test['reason']}. Then: {g['reason']}"}})


#: label of the bits-only plan among the guard's baselines
BITS_ONLY = "bits-only (rtn)"
#: significance level at which a joint (bits, method) plan replaces the bits-only plan (#16)
METHODS_ALPHA = 0.05


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact p-value of the sign test of ``wins`` against ``losses`` (ties left out).

    With the counts of examples that only one of two classifiers gets right this is McNemar's
    exact test: ``min(1, 2 * P(X >= max(wins, losses)))`` for ``X ~ Binomial(wins + losses, 1/2)``.
    """
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(max(wins, losses), n + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def methods_test(joint: BitPlan, simple: BitPlan, scores: Callable[[BitPlan], list[float]],
                 alpha: float = METHODS_ALPHA) -> dict[str, Any]:
    """Keep the joint (bits, method) plan over the bits-only plan only when it wins a paired test.

    Args:
        joint: the joint plan; simple: the bits-only plan (the simpler one, kept unless beaten).
        scores: plan -> one score per validation example, higher is better (the same examples,
            in the same order, for both plans: :func:`per_example_scores`).
        alpha: significance level of the two-sided :func:`sign_test_p`.

    Returns:
        ``{"kept": "mixed" or BITS_ONLY, "wins": examples the joint plan scores higher,
        "losses": examples it scores lower, "p_value", "alpha", "reason"}``. The joint plan is
        kept iff ``wins > losses`` and ``p_value < alpha``.
    """
    a, b = scores(joint), scores(simple)
    if len(a) != len(b):
        raise ValueError(f"methods_test: scores gave {len(a)} and {len(b)} examples for the two plans; "
                         "they must score the same examples")
    wins = sum(1 for x, y in zip(a, b) if x > y)
    losses = sum(1 for x, y in zip(a, b) if x < y)
    p = sign_test_p(wins, losses)
    keep = wins > losses and p < alpha
    reason = (f"on {len(a)} validation examples the joint plan scored higher on {wins} and lower on {losses} "
              f"than the bits-only plan: two-sided sign test p = {p:.4g} {'<' if keep else '>='} {alpha:g}"
              if wins > losses else
              f"on {len(a)} validation examples the joint plan scored higher on {wins} and lower on {losses} "
              "than the bits-only plan: no lead")
    return {"kept": "mixed" if keep else BITS_ONLY, "wins": wins, "losses": losses, "p_value": p, "alpha": alpha,
            "n_examples": len(a), "reason": reason + ("; kept the joint plan" if keep else "; kept the bits-only plan")}


def per_example_scores(model: Any, task: Any, batches: list[Any]) -> list[float]:
    """One score per example of ``(inputs, targets)`` batches, higher is better: 1.0 / 0.0 for a
    correct / wrong top-1 when ``task.metric`` is accuracy, else minus the example's ``task.loss_fn``."""
    import torch

    out: list[float] = []
    with torch.no_grad():
        for x, y in batches:
            pred = model(x)
            if task.metric == "accuracy":
                out.extend(float(v) for v in (pred.argmax(dim=-1) == y).tolist())
            else:
                out.extend(-float(task.loss_fn(pred[i:i + 1], y[i:i + 1])) for i in range(len(y)))
    return out


def rtn_table(table: CostTable) -> CostTable:
    """``table``'s round-to-nearest rows (the table a bits-only plan is allocated on)."""
    recs = [r for r in table.to_records() if r.get("method", "rtn") == "rtn"]
    return CostTable.from_records(recs, ties=table.ties, where="guard (bits-only)")


def bits_only(table: CostTable, budgets: Any, rules: Rules | None = None, solver: str = "cbc") -> dict[str, BitPlan]:
    """``{"bits-only (rtn)": plan}``: the table's round-to-nearest rows allocated alone, when it has other methods (#16).

    A joint (bits, method) plan is priced by one-layer figures; the guard keeps it only where it
    is not worse on validation than the plan the allocator would give without methods.
    """
    if all(c.method == "rtn" for cs in table.candidates for c in cs):
        return {}
    try:
        return {BITS_ONLY: allocate(rtn_table(table), budgets, rules=rules, solver=solver)}
    except InfeasibleBudgetError:  # the methods' rows made the budget reachable: nothing to compare
        return {}


def mean_loss(model: Any, loss_fn: Callable[[Any, Any], Any], batches: list[Any]) -> float:
    """The example-weighted mean of ``loss_fn`` over ``(inputs, targets)`` batches (the guard's tie-break)."""
    import torch

    total, n = 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            k = len(y)
            total += float(loss_fn(model(x), y)) * k
            n += k
    return total / max(n, 1)


def calibrate_step(prep: Any, table: CostTable) -> CostTable:
    """:func:`~mpsearch.sensitivity.calibrate.calibrate_omega` on the run's calibration batches."""
    from mpsearch.sensitivity.calibrate import CalibrationConfig, calibrate_omega

    spec = prep.recipe.sensitivity
    config = CalibrationConfig(factor=spec.calibrate_factor, max_evaluations=spec.calibrate_max_evaluations)
    batches = prep.inputs.train[: prep.recipe.data.calib_batches]
    return calibrate_omega(prep.inputs.model, table, prep.inputs.task.loss_fn, batches, prep.profile, config)


def calibrate_as_recipe(prep: Any, table: CostTable) -> CostTable:
    """The table ``mpsearch run`` allocates on: :func:`calibrate_step` when the recipe's
    ``sensitivity.calibrate`` is on (empirical omega is already measured), else ``table`` itself."""
    spec = prep.recipe.sensitivity
    return calibrate_step(prep, table) if spec.calibrate and spec.method != "empirical" else table
