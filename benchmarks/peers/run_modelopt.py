"""NVIDIA ModelOpt ``mtq.auto_quantize`` as a peer: it picks each layer's weight width, mpsearch scores the plan.

    /work/venvs/modelopt/bin/python benchmarks/peers/run_modelopt.py   # after: benchmarks/peers/setup.sh modelopt

For each task (narrow_cnn, denoise) and seed 0-2, and each budget of bench_decisions.py (uniform W3 size ->
effective_bits 3.0, "W2.5" -> 2.5; ModelOpt's effective bits are parameter-weighted weight bits), the
search space is the same as mpsearch's: weight-only INT2/3/4/8 per output channel (axis 0), inputs float.
ModelOpt always adds "do not quantize"; a layer it leaves float is written as 8 bits (the widest candidate
of the shared space) and counted in ``float_layers``. Methods: "gradient" (loss = the task's loss) and
"kl_div" (classification only: KL needs logits). Plans go to benchmarks/results/peers/modelopt-<method>_<task>_s<seed>.json
as plain data {"plans": {budget: {layer: bits}}}; bench_decisions.py evaluates them with mps.quantize.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import modelopt.torch.quantization as mtq  # noqa: E402

from mpsearch.demo import batches  # noqa: E402
from mpsearch.demo.images import load_denoise_run  # noqa: E402
from mpsearch.demo.narrow import load_narrow_run  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "peers"
BUDGETS = {"W3": 3.0, "W2.5": 2.5}


def fmt(bits: int) -> dict:
    return {"quant_cfg": [{"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": bits, "axis": 0}},
                          {"quantizer_name": "*input_quantizer", "enable": False},
                          {"quantizer_name": "*output_quantizer", "enable": False}],
            "algorithm": "max"}


def chosen_bits(state: dict, names: list[str]) -> tuple[dict[str, int], list[str]]:
    """Layer -> bits from the search state's best recipe ("CUSTOM_k(effective-bits: b)"; NONE = left float)."""
    recipe = {k.removesuffix(".quant_recipe"): str(v) for k, v in state["best"]["recipe"].items()}
    bits, floats = {}, []
    for n in names:
        text = recipe[n]
        if text.startswith("NONE"):
            bits[n] = 8
            floats.append(n)
        else:
            bits[n] = int(float(text.split("effective-bits:")[1].strip(" )")))
    return bits, floats


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    for task in ("narrow_cnn", "denoise"):
        for seed in (0, 1, 2):
            run = load_narrow_run(seed=seed) if task == "narrow_cnn" else load_denoise_run(seed=seed)
            loss = nn.CrossEntropyLoss() if task == "narrow_cnn" else nn.MSELoss()
            data = list(batches(run.splits.train, 128, shuffle=True, seed=seed))[:4]
            names = [n for n, m in run.model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
            for method in ("gradient", "kl_div") if task == "narrow_cnn" else ("gradient",):
                plans, notes = {}, {}
                for label, eff in BUDGETS.items():
                    t0 = time.perf_counter()
                    model = copy.deepcopy(run.model)
                    qmodel, state = mtq.auto_quantize(
                        model, constraints={"effective_bits": eff}, quantization_formats=[fmt(b) for b in (2, 3, 4, 8)],
                        data_loader=data, forward_step=lambda m, b: m(b[0]),
                        loss_func=lambda out, b: loss(out, b[1]), num_calib_steps=2, num_score_steps=4,
                        method=method)
                    plans[label], floats = chosen_bits(state, names)
                    notes[label] = {"float_layers": floats, "seconds": time.perf_counter() - t0,
                                    "effective_bits": state["best"]["constraints"]["effective_bits"]}
                    print(f"modelopt-{method} {task} seed {seed} {label}: {plans[label]} float {floats}", flush=True)
                peer = "modelopt-" + ("kl" if method == "kl_div" else "gradient")
                (OUT / f"{peer}_{task}_s{seed}.json").write_text(json.dumps(
                    {"peer": peer, "version": version("nvidia-modelopt"), "plans": plans, "notes": notes}, indent=1))


if __name__ == "__main__":
    main()
