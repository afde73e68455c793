"""The demo end to end (#17 target 5): `mpsearch run recipes/demo.yaml` from an empty cache.

Each repetition starts a fresh Python process (imports counted) running the CLI exactly as a
user would (`mpsearch run RECIPE --output-dir TMP --quiet`) with ``$MPSEARCH_CACHE`` pointing at
a new, empty folder, so the demo model is trained, the sensitivity is computed and the numba
kernels are compiled as on a first run. The child records every pipeline stage's wall time
(the run's own ``timings_s``) and its process CPU time (user + sys of all threads, by wrapping
the pipeline's stage timer); the parent records the whole process's wall time, its CPU time
(``RUSAGE_CHILDREN``) and the load average before and after.

The machine is shared, so wall time depends on the load; the CPU time does not (much): it is
the load-independent figure. On an idle 2-core machine the wall time is about the CPU time
(training and QAT run one intra-op thread).

Run:  python benchmarks/bench_demo_time.py [--repeats 3] [--recipe recipes/demo.yaml]
Prints a table and writes benchmarks/results/demo_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("imports", "load_s", "discover_s", "sensitivity_s", "allocation_s", "guard_s", "frontier_s",
          "finetune_s", "validation_s", "files")


def loadavg() -> str:
    """The 1/5/15-minute load averages (the machine may be shared)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def child(recipe: str, out_dir: str, record: str) -> int:
    """Run the CLI in this process, recording each stage's wall and CPU seconds into ``record``."""
    t_start, c_start = time.perf_counter(), time.process_time()
    from contextlib import contextmanager

    from mpsearch import cli
    from mpsearch.pipeline import run as run_module
    from mpsearch.pipeline import steps

    cpu: dict[str, float] = {"imports": time.process_time() - c_start}
    wall: dict[str, float] = {"imports": time.perf_counter() - t_start}
    original_prepare = steps.prepare

    def prepare(*args, **kwargs):  # load (demo training on an empty cache) and discover
        c0 = time.process_time()
        prep = original_prepare(*args, **kwargs)
        cpu["prepare"] = time.process_time() - c0
        return prep

    @contextmanager
    def timed(timings, key):
        t, c = time.perf_counter(), time.process_time()
        yield
        timings[key] = time.perf_counter() - t
        cpu[key] = time.process_time() - c

    steps.prepare = prepare
    run_module._timed = timed
    rc = cli.main(["run", recipe, "--output-dir", out_dir, "--quiet"])
    wall["process"] = time.perf_counter() - t_start
    cpu["process"] = time.process_time() - c_start
    Path(record).write_text(json.dumps({"rc": rc, "wall": wall, "cpu": cpu}))
    return rc


def one_run(recipe: str) -> dict:
    """One repetition in a fresh process with an empty cache; wall, CPU and stage figures."""
    with tempfile.TemporaryDirectory(prefix="mps-demo-time-") as tmp:
        env = {**os.environ, "MPSEARCH_CACHE": str(Path(tmp) / "cache")}
        record = Path(tmp) / "record.json"
        out_dir = Path(tmp) / "out"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_before = loadavg()
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--child", recipe, str(out_dir), str(record)], env=env,
                       check=True, cwd=ROOT)
        wall_s = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        rec = json.loads(record.read_text())
        summary = json.loads(next(out_dir.glob("*/summary.json")).read_text())
    stages = dict(summary["timings_s"])
    stages["imports"] = rec["wall"]["imports"]
    stages["files"] = stages["total_s"] - sum(v for k, v in stages.items() if k not in ("total_s", "imports"))
    cpu = dict(rec["cpu"])
    cpu["load_s"] = cpu.pop("prepare", 0.0)  # load + discover together (discover is ~0.03 s)
    return {"wall_s": wall_s, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
            "stages_wall_s": stages, "stages_cpu_s": cpu, "load_before": load_before, "load_after": loadavg(),
            "float_accuracy": summary.get("float_accuracy"),
            "chosen": {k: summary["chosen"].get(k) for k in ("acc_ptq", "acc_qat", "acc_int")},
            "plan": " ".join(f"{r['layer']}={r['key']}" for r in summary["layers"])}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        raise SystemExit(child(*sys.argv[2:5]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "demo.yaml"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "demo_time.json"))
    args = ap.parse_args()
    runs = []
    for i in range(args.repeats):
        r = one_run(args.recipe)
        runs.append(r)
        print(f"run {i}: wall {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s (user {r['user_s']:.1f} + sys {r['sys_s']:.1f}), "
              f"load {r['load_before']} -> {r['load_after']}; float {r['float_accuracy']:.4f}, chosen {r['chosen']}",
              flush=True)
    print(f"\n{'stage':<14} {'wall s (median)':>16} {'CPU s (median)':>15} {'share of CPU':>13}")
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    total_cpu = med([r["cpu_s"] for r in runs])
    seen = [k for r in runs for k in r["stages_wall_s"] if k != "total_s"]
    for stage in [*STAGES, *dict.fromkeys(k for k in seen if k not in STAGES)]:  # and any stage added later
        w = med([r["stages_wall_s"].get(stage, 0.0) for r in runs])
        c = [r["stages_cpu_s"].get(stage) for r in runs]
        c = med(c) if None not in c else None
        print(f"{stage:<14} {w:>16.2f} {'-' if c is None else f'{c:.2f}':>15} "
              f"{'-' if c is None else f'{100 * c / total_cpu:.0f}%':>13}")
    print(f"{'process':<14} {med([r['wall_s'] for r in runs]):>16.2f} {total_cpu:>15.2f}")
    out = {"machine": f"{os.cpu_count()}-core {platform.machine()} CPU, no GPU", "python": platform.python_version(),
           "recipe": args.recipe, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
