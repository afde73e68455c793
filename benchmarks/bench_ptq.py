"""Uniform post-training quantization of the demo models on digits.

For every demo model: FP32 test accuracy, and the fake-quant (simulated) test accuracy at
W8A8, W4A8, W4A4 and W2A8 with the weight AND activation ranges calibrated by min-max, MSE
and percentile (99.99). Weights are symmetric per-channel, activations asymmetric per-tensor,
BatchNorm folded; every quantizable layer takes the same bits. Calibration uses 4 batches of
64 training images. Writes benchmarks/results/ptq.json.

    python benchmarks/bench_ptq.py
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import torch

from mpsearch import BitPlan, quantize
from mpsearch.core.io import dump_structured
from mpsearch.demo import DEMO_MODELS, batches, evaluate, load_demo
from mpsearch.quant import QuantizeConfig, quantizable_layer_names

RESULTS = Path(__file__).resolve().parent / "results" / "ptq.json"
SETTINGS = ((8, 8), (4, 8), (4, 4), (2, 8))
CALIBRATORS = ("minmax", "mse", "percentile")


def ptq_rows() -> list[dict[str, Any]]:
    """One row per model x bit setting x calibrator with the test accuracy."""
    rows = []
    for name in DEMO_MODELS:
        model, splits = load_demo(name)
        test = batches(splits.test, 256)
        calib = list(batches(splits.train, 64, shuffle=True, seed=0))[:4]
        fp32 = evaluate(model, test)
        names = quantizable_layer_names(model)
        for w_bits, a_bits in SETTINGS:
            plan = BitPlan.uniform(names, w_bits, a_bits)
            for calibrator in CALIBRATORS:
                config = QuantizeConfig(weight_calibrator=calibrator, activation_calibrator=calibrator)
                start_s = time.perf_counter()
                qmodel = quantize(model, plan, calib, config=config)
                rows.append({
                    "model": name, "fp32_accuracy": fp32, "setting": f"W{w_bits}A{a_bits}",
                    "calibrator": calibrator, "accuracy": evaluate(qmodel, test),
                    "quantize_time_s": time.perf_counter() - start_s,
                })
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """Models down, settings x calibrators across."""
    keys = [(f"W{w}A{a}", c) for w, a in SETTINGS for c in CALIBRATORS]
    print(f"{'model':<16}{'FP32':>7} " + " ".join(f"{s + ' ' + c[:3]:>11}" for s, c in keys))
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = {(r["setting"], r["calibrator"]): r for r in rows if r["model"] == name}
        fp32 = next(iter(mine.values()))["fp32_accuracy"]
        print(f"{name:<16}{100 * fp32:>7.2f} " + " ".join(f"{100 * mine[k]['accuracy']:>11.2f}" for k in keys))


def main() -> None:
    torch.manual_seed(0)
    rows = ptq_rows()
    print_table(rows)
    dump_structured({"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                     "n_threads": torch.get_num_threads(), "rows": rows}, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
