"""FP32 baseline of the demo models on the digits test split.

Prints one row per demo model (test/val accuracy, parameters, training time) and writes
benchmarks/results/demo_fp32.json. ``demo_fp32_rows()`` returns the rows so that later
benchmarks (PTQ, mixed precision) can add columns to the same table.

    python benchmarks/bench_demo_fp32.py             # use the cache (train on first use)
    python benchmarks/bench_demo_fp32.py --retrain   # measure training afresh
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from mpsearch.core.io import dump_structured
from mpsearch.demo import DEMO_MODELS, batches, evaluate, load_demo_run

RESULTS = Path(__file__).resolve().parent / "results" / "demo_fp32.json"


def demo_fp32_rows(cache_dir: str | Path | None = None, retrain: bool = False) -> list[dict[str, Any]]:
    """One row per demo model: FP32 accuracy, size and the training cost recorded at training time.

    Args:
        cache_dir: checkpoint cache (default: ``$MPSEARCH_CACHE`` or ``~/.cache/mpsearch``).
        retrain: train every model afresh instead of loading cached weights.

    Returns:
        Rows with keys model, n_params, fp32_size_bytes, test_accuracy, val_accuracy,
        n_test, epochs, n_steps, train_time_s, train_cpu_s, load_time_s, from_cache.
    """
    rows = []
    for name in DEMO_MODELS:
        start_s = time.perf_counter()
        run = load_demo_run(name, cache_dir=cache_dir, retrain=retrain)
        load_time_s = time.perf_counter() - start_s
        test_accuracy = evaluate(run.model, batches(run.splits.test, 256))
        n_params = sum(p.numel() for p in run.model.parameters())
        rows.append({
            "model": name,
            "n_params": n_params,
            "fp32_size_bytes": 4 * n_params,
            "test_accuracy": test_accuracy,
            "val_accuracy": evaluate(run.model, batches(run.splits.val, 256)),
            "n_test": len(run.splits.test),
            "epochs": run.info["config"]["epochs"],
            "n_steps": run.info["n_steps"],
            "train_time_s": run.info["train_time_s"],
            "train_cpu_s": run.info.get("train_cpu_s"),
            "load_time_s": load_time_s,
            "from_cache": run.from_cache,
        })
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print the rows as a fixed-width table."""
    header = f"{'model':<16}{'params':>8}{'test acc':>10}{'val acc':>9}{'epochs':>8}{'train s':>9}{'cpu s':>8}{'cached':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        cpu = f"{r['train_cpu_s']:.2f}" if r["train_cpu_s"] is not None else "-"
        print(f"{r['model']:<16}{r['n_params']:>8}{r['test_accuracy']:>10.4f}{r['val_accuracy']:>9.4f}"
              f"{r['epochs']:>8}{r['train_time_s']:>9.2f}{cpu:>8}{str(r['from_cache']):>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrain", action="store_true", help="train afresh (measures training time)")
    parser.add_argument("--fresh-cache", action="store_true", help="use a temporary, empty cache folder")
    parser.add_argument("--cache-dir", default=None, help="checkpoint cache folder")
    args = parser.parse_args()
    cache_dir = tempfile.mkdtemp(prefix="mpsearch-bench-") if args.fresh_cache else args.cache_dir
    rows = demo_fp32_rows(cache_dir=cache_dir, retrain=args.retrain)
    print_table(rows)
    dump_structured({
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "torch": str(torch.__version__), "torch_threads": torch.get_num_threads()},
        "rows": rows,
    }, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
