"""NVIDIA ModelOpt ``mtq.auto_quantize`` on the language-model task (gpt_tiny): its per-layer formats, scored by mpsearch.

    /work/venvs/modelopt/bin/python benchmarks/peers/run_modelopt_lm.py [--seeds 0 1 2] [--methods gradient kl_div]

(after ``benchmarks/peers/setup.sh modelopt``; the venv sees the system site-packages, so mpsearch's demo
model, text and size accounting load here: nothing is handed over but the plan file.)

Search space = bench_decisions_lm.py's weight-only formats, as ModelOpt configs: INT2/3/4 in blocks of 128
input features (``block_sizes {-1: 128}``, symmetric, = ``w{2,3,4}a16g128``) and INT8 per output channel
(``axis 0`` = ``w8a16``); ModelOpt always adds "do not quantize" (= ``w16a16``). Inputs stay float.
ModelOpt searches its quantizable modules: the 12 block linears and ``head`` (it groups q/k/v of a block,
its TensorRT-LLM rule); ``tok_emb`` is tied to ``head`` and takes head's format, ``pos_emb`` (an embedding
ModelOpt does not quantize) takes the budget's uniform format.

Budget: ModelOpt's constraint is ``effective_bits`` = parameter-weighted bits of the searched weights. Each
format carries its stored bits per weight (``effective_bits``: b + 16/128 for the fp16 scale of a group or of
a 128-wide row), and the target is the budget (bytes of uniform W4 g128 / W3 g128, mpsearch's accounting)
minus what ModelOpt does not decide (pos_emb, biases), per searched weight. If the plan still exceeds the
budget in mpsearch's bytes, the target is lowered (scores restored from ModelOpt's checkpoint) until it fits.
Data: the same 6 train batches of 32 windows that mpsearch's sensitivity (2) and calibration (4) get.
Output: ``benchmarks/results/peers/modelopt-{gradient,kl}_lm_s<seed>.json`` = {"plans": {budget: {layer: key}}}.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import traceback
from importlib.metadata import version
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import modelopt.torch.quantization as mtq  # noqa: E402

import mpsearch as mps  # noqa: E402
from mpsearch.allocation import uniform_plan  # noqa: E402
from mpsearch.core.plan import LayerBits  # noqa: E402
from mpsearch.demo import lm_loss, load_demo_lm_run, text_batches  # noqa: E402
from mpsearch.hardware.resources import resource_table  # noqa: E402
from mpsearch.model import weight_ties  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "peers"
FORMATS = ["w2a16g128", "w3a16g128", "w4a16g128", "w8a16", "w16a16"]  # bench_decisions_lm.FORMATS
BUDGETS = {"W4 g128": "w4a16g128", "W3 g128": "w3a16g128"}
#: ModelOpt format -> (mpsearch key, stored bits per weight: codes + one fp16 scale per 128 weights)
MO_FORMATS = {"w2a16g128": (2, {-1: 128}), "w3a16g128": (3, {-1: 128}), "w4a16g128": (4, {-1: 128}), "w8a16": (8, None)}


def mo_format(key: str) -> dict:
    bits, blocks = MO_FORMATS[key]
    wq = {"num_bits": bits, "block_sizes": blocks} if blocks else {"num_bits": bits, "axis": 0}
    return {"quant_cfg": [{"quantizer_name": "*weight_quantizer", "cfg": wq},
                          {"quantizer_name": "*input_quantizer", "enable": False},
                          {"quantizer_name": "*output_quantizer", "enable": False}],
            "algorithm": "max", "effective_bits": bits + 16 / 128}


def key_of(recipe: str) -> str:
    """mpsearch key of a ModelOpt recipe string ("CUSTOM_2(effective-bits: 4.125)"; NONE: 16 bits)."""
    if recipe.startswith("NONE"):
        return "w16a16"
    eff = float(recipe.split("effective-bits:")[1].strip(" )"))
    return next(k for k, (b, _) in MO_FORMATS.items() if abs(b + 16 / 128 - eff) < 1e-6)


def plan_keys(state: dict, table, label: str) -> dict[str, str]:
    recipe = {k.removesuffix(".quant_recipe"): str(v) for k, v in state["best"]["recipe"].items()}
    keys = {n: key_of(recipe[n]) for n in table.layers if n in recipe}
    for n in table.layers:  # ModelOpt's grouping rule: q/k/v of a block share q_proj's recipe
        head, _, leaf = n.rpartition(".")
        if n not in recipe and leaf in ("k_proj", "v_proj") and f"{head}.q_proj" in recipe:
            keys[n] = key_of(recipe[f"{head}.q_proj"])
    keys["tok_emb"] = keys["head"]  # tied weight: one format
    keys.setdefault("pos_emb", BUDGETS[label])  # not searched by ModelOpt
    missing = [n for n in table.layers if n not in keys]
    if missing:
        raise KeyError(f"ModelOpt recipe has no format for {missing}; recipe keys {sorted(recipe)}")
    return keys


def size_of(table, keys: dict[str, str]) -> float:
    layers = {}
    for i, n in enumerate(table.layers):
        layers[n] = LayerBits.from_candidate(next(c for c in table.candidates[i] if c.key == keys[n]))
    return float(table.totals(table.rows_for_plan(layers))["size_bytes"])


def layer_bytes(table, name: str, key: str) -> float:
    """mpsearch's stored bytes of one layer at candidate ``key``."""
    i = table.index_of(name)
    j = [c.key for c in table.candidates[i]].index(key)
    return float(table.resources["size_bytes"][int(table.offsets[i]) + j])


def one_seed(seed: int, method: str, args: argparse.Namespace) -> dict:
    run = load_demo_lm_run("gpt_tiny", seed=seed)
    model, splits = run.model.eval(), run.splits
    ctx = model.config.context
    windows = list(text_batches(splits.train, ctx, 32, n_batches=6, seed=1000 + seed))  # as bench_decisions_lm
    layers = mps.discover(model, splits.example_inputs(2, ctx))
    table = resource_table(layers, mps.load_profile("x86-2core-int"), formats=FORMATS, ties=weight_ties(layers))
    lay = {x.name: x for x in layers}
    searched = [n for n in table.layers if n not in ("tok_emb", "pos_emb")]
    n_w = sum(lay[n].n_weights for n in searched)
    bias_b = sum(2 * (lay[n].n_params - lay[n].n_weights) for n in searched)
    ckpt = Path(args.work) / f"modelopt_lm_{method}_s{seed}.pth"
    plans, notes = {}, {}
    for label, fmt in BUDGETS.items():
        budget = float(uniform_plan(table, int(fmt[1]), 16, key=fmt)[0].totals["size_bytes"])
        pos_b = layer_bytes(table, "pos_emb", fmt)
        target = min(16.0, 8 * (budget - pos_b - bias_b) / n_w)
        tries = []
        t0 = time.perf_counter()
        for _ in range(8):
            _, state = mtq.auto_quantize(
                copy.deepcopy(model), constraints={"effective_bits": target},
                quantization_formats=[mo_format(k) for k in MO_FORMATS], data_loader=windows,
                forward_step=lambda m, b: m(b[0]), loss_func=lambda out, b: lm_loss(out, b[1]),
                num_calib_steps=4, num_score_steps=6, method=method, checkpoint=str(ckpt))
            keys = plan_keys(state, table, label)
            size = size_of(table, keys)
            tries.append({"effective_bits": target, "size_bytes": size,
                          "modelopt_effective_bits": state["best"]["constraints"].get("effective_bits")})
            if size <= budget * (1 + 1e-9):
                break
            target *= 0.995 * budget / size  # lower the target until the plan fits mpsearch's bytes
        plans[label] = keys
        notes[label] = {"budget_bytes": budget, "tries": tries, "seconds": time.perf_counter() - t0,
                        "fits": tries[-1]["size_bytes"] <= budget * (1 + 1e-9)}
        print(f"modelopt-{method} lm seed {seed} {label}: {keys}  {tries}", flush=True)
    return {"plans": plans, "notes": notes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["gradient", "kl_div"], choices=["gradient", "kl_div"])
    ap.add_argument("--work", default="/tmp", help="folder for ModelOpt's search checkpoints (scores)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    for method in args.methods:
        peer = "modelopt-" + ("kl" if method == "kl_div" else "gradient")
        for seed in args.seeds:
            try:
                got = one_seed(seed, method, args)
            except Exception as exc:  # a refusal is a result: keep the exact error
                got = {"plans": {}, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                print(f"{peer} lm seed {seed}: FAILED {got['error']}", flush=True)
            (OUT / f"{peer}_lm_s{seed}.json").write_text(json.dumps(
                {"peer": peer, "version": version("nvidia-modelopt"), **got}, indent=1))


if __name__ == "__main__":
    main()
