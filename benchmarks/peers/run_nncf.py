"""Legacy NNCF 2.19 HAWQ precision initialisation as a peer: it picks each layer's weight width.

    /work/venvs/nncf/bin/python benchmarks/peers/run_nncf.py   # after: benchmarks/peers/setup.sh nncf

For each task (narrow_cnn, denoise), seed 0-2 and budget of bench_decisions.py, NNCF's legacy torch
``create_compressed_model`` runs the "hawq" precision initializer over bits [2, 3, 4, 8] with
``compression_ratio`` = 8 / target bits (its ratio is against an all-INT8 model: 8/3 at the uniform W3
budget, 8/2.5 at "W2.5"). The weight quantizers' widths it chooses are written as plain data to
benchmarks/results/peers/nncf-hawq_<task>_s<seed>.json; bench_decisions.py evaluates them with mps.quantize.
A budget NNCF refuses ("Invalid compression ratio ... range [0.5, 1.0]": its ratio counts
FLOPs x max(w_bits, a_bits) against INT8, so with 8-bit activations it never exceeds 1) is written to the
file's ``notes`` as ``not_expressible`` with NNCF's own message, and its plan is left out.
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
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import os  # noqa: E402

os.environ.setdefault("NNCF_TORCH_LEGACY_TRACING", "1")  # 2.19 needs it for create_compressed_model (before import)
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")  # its C++ extension compiles on first use (minutes on 2 busy cores)

from nncf import NNCFConfig  # noqa: E402
from nncf.torch import create_compressed_model, register_default_init_args  # noqa: E402

from mpsearch.demo.images import load_denoise_run  # noqa: E402
from mpsearch.demo.narrow import load_narrow_run  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "peers"
BUDGETS = {"W3": 3.0, "W2.5": 2.5}


def hawq_bits(run, loss: nn.Module, target_bits: float, shape: list[int]) -> dict[str, int]:
    config = NNCFConfig.from_dict({
        "input_info": {"sample_size": shape},
        "compression": {"algorithm": "quantization",
                        "weights": {"mode": "symmetric", "per_channel": True},
                        "initializer": {"range": {"num_init_samples": 256},
                                        "batchnorm_adaptation": {"num_bn_adaptation_samples": 0},
                                        "precision": {"type": "hawq", "bits": [2, 3, 4, 8], "num_data_points": 256,
                                                      "iter_number": 50, "tolerance": 1e-4,
                                                      "compression_ratio": 8.0 / target_bits,
                                                      "bitwidth_assignment_mode": "liberal"}}}})
    loader = DataLoader(run.splits.train, batch_size=64, shuffle=False)
    config = register_default_init_args(config, loader, criterion=loss)
    _, qmodel = create_compressed_model(copy.deepcopy(run.model), config)
    bits = {}
    for name, module in qmodel.named_modules():
        for layer in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc"):
            if name.endswith(layer) and hasattr(module, "pre_ops"):
                for op in module.pre_ops.values():
                    q = getattr(op, "op", None)
                    if q is not None and hasattr(q, "num_bits"):
                        bits[layer] = int(q.num_bits)
    return bits


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    # NNCF writes original_graph.dot (and other dumps) into the working directory: keep them out of the tree
    import tempfile
    os.chdir(tempfile.mkdtemp(prefix="nncf-peer-"))
    for task in ("narrow_cnn", "denoise"):
        for seed in (0, 1, 2):
            run = load_narrow_run(seed=seed) if task == "narrow_cnn" else load_denoise_run(seed=seed)
            loss = nn.CrossEntropyLoss() if task == "narrow_cnn" else nn.MSELoss()
            shape = [1, *run.splits.train.tensors[0].shape[1:]]
            plans, notes = {}, {}
            for label, eff in BUDGETS.items():
                t0 = time.perf_counter()
                try:
                    plans[label] = hawq_bits(run, loss, eff, shape)
                except AttributeError as exc:  # "Invalid compression ratio=... Should be within range [lo, hi]"
                    # NNCF's ratio = 8 x sum(FLOPs) / sum(FLOPs x max(w_bits, a_bits)): with the activations at
                    # 8 bits (our plans are weight-only) no weight width below 8 can lower the denominator, so
                    # the ratios it can reach stay <= 1 and a 3-bit or 2.5-bit weight budget cannot be asked for.
                    notes[label] = {"seconds": time.perf_counter() - t0, "not_expressible": str(exc)}
                    print(f"nncf-hawq {task} seed {seed} {label}: budget not expressible: {exc}", flush=True)
                    continue
                notes[label] = {"seconds": time.perf_counter() - t0}
                print(f"nncf-hawq {task} seed {seed} {label}: {plans[label]}", flush=True)
            (OUT / f"nncf-hawq_{task}_s{seed}.json").write_text(json.dumps(
                {"peer": "nncf-hawq", "version": version("nncf"), "plans": plans, "notes": notes}, indent=1))


if __name__ == "__main__":
    main()
