"""The fair loop of benchmarks/bench_sensitivity.py (#17 target 3) is a correct baseline.

Both the fair loop (graph built once, one restricted HVP per probe and layer) and ``analyze``
at the benchmark's settings (5% relative standard error, no floor) must land on the exact
Hessian trace of the tiny model within their reported standard errors, so the speed ratio of
the benchmark compares estimates of the same quantity at the same precision.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mpsearch.sensitivity import HessianConfig, analyze

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_sensitivity.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_sensitivity_for_test", _BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fair_loop_matches_exact_trace_within_its_error(bench, tiny, exact, seed):
    model, batches, loss_fn, names = tiny
    out = bench.fair_loop(model, loss_fn, batches, target=0.05, min_probes=8, max_probes=4000, seed=seed)
    for n, (trace, stderr, probes) in zip(names, out["layers"]):
        true = float(exact[n].trace())
        assert stderr <= 0.05 * abs(trace) + 1e-12  # stopped at the target
        assert probes >= 8
        assert abs(trace - true) <= 4 * stderr, (n, trace, true, stderr)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_analyze_at_bench_settings_matches_exact_trace_within_its_error(tiny, exact, seed):
    model, batches, loss_fn, names = tiny
    cfg = HessianConfig(rel_stderr_target=0.05, max_probes=4000, min_probes=8, seed=seed, floor_rel=0.0)
    sens = analyze(model, loss_fn, batches, config=cfg)
    for n in names:
        true = float(exact[n].trace())
        rec = sens[n]
        assert rec.trace_stderr <= 0.05 * abs(rec.trace) + 1e-12
        assert abs(rec.trace - true) <= 4 * rec.trace_stderr, (n, rec.trace, true, rec.trace_stderr)
