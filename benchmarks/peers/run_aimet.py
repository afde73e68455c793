"""AIMET AMP (automatic mixed precision) as a peer: it picks each layer's weight width, mpsearch scores the plan.

    /work/venvs/aimet/bin/python benchmarks/peers/run_aimet.py   # after: benchmarks/peers/setup.sh aimet
    /work/venvs/aimet/bin/python benchmarks/peers/run_aimet.py --score loss   # phase 1/2 scored by -val loss

What runs: aimet-torch's greedy AMP (``aimet_torch.amp.mixed_precision_algo.GreedyMixedPrecisionAlgo``,
the algorithm ``aimet_torch.mixed_precision.choose_mixed_precision`` runs, called directly, inside the same
``_mock_v1_quantizers`` wrapper, so that its baseline candidate can be read; the wrapper only adds bokeh
plots). Phase 1 scores every layer group at every candidate with the others float; phase 2 sorts those
(group, candidate) steps by score, best first, and applies them cumulatively from the baseline: each
prefix is a point of its Pareto curve (relative BitOps, score). ``allowed_accuracy_drop=None`` with
``AMPSearchAlgo.BruteForce`` evaluates every point (with the default binary search and no drop only the
last point would be evaluated).

Same search space as mpsearch's: candidates ((16, int), (b, int)) for b in 2/3/4/8, weights symmetric
per output channel, biases float (a quantsim config written here); AIMET cannot turn the activation
quantizers off (``is_output_quantized: False`` in the defaults raises NotImplementedError), so they stay
at int16 for every candidate, which leaves a layer's activation term the same for all its candidates.
Scores (``--score``): the task metric on the VALIDATION split (top-1 %, PSNR dB: AIMET's documented use)
or minus the validation loss (``loss``); encodings from the 2 calibration batches of bench_decisions.py.

Budget -> Pareto point: AIMET's budgets are a drop in score or a point on its BitOps curve; ours is a
size in bytes. The peer file holds the whole curve (each point's per-layer bits, score, relative BitOps);
bench_decisions.py maps each budget with :func:`pick_point`: among the curve's points whose size (its
own ``size_of``, the budget's accounting) fits, the one with the best AIMET phase-2 score, ties to the
earlier (larger) point. The curve ends with AIMET's lowest uniform candidate (all w2, scored by AIMET),
its answer when that meets the drop: phase 2 applies steps last-set-wins, so its path can end above
the smallest budget (seen on narrow_cnn with ``--score loss``), and w2 always fits. Files: benchmarks/results/peers/aimet-amp[-loss]_<task>_s<seed>.json; a task
AIMET cannot run writes its exception under ``notes.error`` instead of a curve.

torchvision: the 0.28.0 wheel that pip resolves for torch 2.13.0 is the CUDA build (its ``_C.so`` needs
``libc10_cuda.so``; the torch here is the CPU build), so ``import torchvision`` fails with "operator
torchvision::nms does not exist". AIMET imports torchvision for detection ops (nms, roi_align) and an
ONNX op map only; :func:`stub_torchvision` puts a module without them in its place (these models use none).
This module imports aimet only inside :func:`aimet_curve`, so the adapter functions run without it.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "peers"
W_BITS = (2, 3, 4, 8)


def replay_curve(start_bits: dict[str, int], steps: Sequence[tuple[Sequence[str], int, float, float]],
                 start_score: float | None = None) -> list[dict[str, Any]]:
    """The per-layer weight bits at every point of an AIMET Pareto curve.

    ``steps`` are the curve's entries in order, each ``(layers of the group's parameter quantizers,
    parameter bits of the candidate, phase-2 score, relative BitOps)``; entry i's model is the start
    with entries 0..i applied in turn (a later entry for the same layer overrides: AIMET's phase 2
    sets quantizer groups one after another, so a layer can also go back up). Groups without
    parameter quantizers (activation-only) leave the bits as they are. Point 0 is the start itself.
    """
    bits = dict(start_bits)
    curve = [{"bits": dict(bits), "score": start_score, "rel_bitops": 1.0, "step": None}]
    for i, (layers, w_bits, score, rel_bitops) in enumerate(steps):
        for name in layers:
            if name not in bits:
                raise KeyError(f"replay_curve: step {i} sets layer {name!r}, which is not among {sorted(bits)}")
            bits[name] = int(w_bits)
        curve.append({"bits": dict(bits), "score": float(score), "rel_bitops": float(rel_bitops), "step": i})
    return curve


def pick_point(curve: Sequence[dict[str, Any]], size_of: Callable[[dict[str, int]], float],
               budget: float) -> tuple[int, dict[str, Any]] | None:
    """The point of ``curve`` that fits ``budget``: best score among those whose ``size_of(bits) <= budget``.

    Ties go to the earlier point (more bits: AIMET walks its curve from the baseline down). Points
    without a score (the start, when its score is unknown) are taken only when no scored point fits.
    Returns ``(index, point)``, or None when no point fits.
    """
    best: tuple[int, dict[str, Any]] | None = None
    for i, point in enumerate(curve):
        if size_of(point["bits"]) > budget + 1e-9:
            continue
        if best is None or (point["score"] is not None and
                            (best[1]["score"] is None or point["score"] > best[1]["score"])):
            best = (i, point)
    return best


def stub_torchvision() -> str | None:
    """Import torchvision, or put a stub without its compiled ops in its place; returns why one was needed."""
    import importlib.machinery
    import types

    try:
        import torchvision  # noqa: F401
        return None
    except Exception as exc:  # RuntimeError "operator torchvision::nms does not exist" (CUDA wheel, CPU torch)
        reason = f"{type(exc).__name__}: {exc}"
    for name in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        del sys.modules[name]

    def unavailable(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError(f"torchvision is stubbed in run_aimet.py ({reason})")

    tv, ops, tr, ds = (types.ModuleType(n) for n in
                       ("torchvision", "torchvision.ops", "torchvision.transforms", "torchvision.datasets"))
    tv.__path__, tv.__version__ = [], "0.28.0"
    ops.nms = ops.roi_align = unavailable
    ops.RoIPool = type("RoIPool", (), {"__init__": unavailable})
    tr.Resize = type("Resize", (), {"__init__": unavailable})
    tv.ops, tv.transforms, tv.datasets = ops, tr, ds
    for module in (tv, ops, tr, ds):
        module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None)
        sys.modules[module.__name__] = module
    return reason


QUANTSIM_CONFIG = {
    "defaults": {"ops": {"is_output_quantized": "True"},
                 "params": {"is_quantized": "True", "is_symmetric": "True"},
                 "strict_symmetric": "False", "per_channel_quantization": "True"},
    "params": {"bias": {"is_quantized": "False"}},
    "op_type": {}, "supergroups": [], "model_input": {"is_input_quantized": "True"}, "model_output": {},
}


def aimet_curve(model: Any, names: list[str], dummy: Any, calib: list[Any], score: Callable[[Any], float],
                workdir: str) -> dict[str, Any]:
    """Run AIMET's greedy AMP over w2/3/4/8 (a16) and return its replayed Pareto curve and run facts."""
    import torch
    from aimet_torch.amp.mixed_precision_algo import GreedyMixedPrecisionAlgo
    from aimet_torch.amp.utils import _mock_v1_quantizers
    from aimet_torch.common.amp.utils import AMPSearchAlgo
    from aimet_torch.common.defs import QuantizationDataType, QuantScheme
    from aimet_torch.common.utils import AimetLogger, CallbackFunc
    from aimet_torch.quantsim import QuantizationSimModel

    AimetLogger.set_level_for_all_areas(logging.WARNING)  # one INFO line per evaluation otherwise

    config = Path(workdir) / "quantsim_config.json"
    config.write_text(json.dumps(QUANTSIM_CONFIG))
    sim = QuantizationSimModel(copy.deepcopy(model).eval(), dummy, quant_scheme=QuantScheme.post_training_tf,
                               default_output_bw=16, default_param_bw=8, config_file=str(config))

    def forward(m: Any, _: Any) -> None:
        with torch.no_grad():
            for x, _y in calib:
                m(x)

    def evaluate(m: Any, _: Any) -> float:
        return float(score(m))

    sim.compute_encodings(forward, None)
    int_ = QuantizationDataType.int
    candidates = [((16, int_), (b, int_)) for b in sorted(W_BITS, reverse=True)]
    sim.connected_graph.assert_safe()
    t0 = time.perf_counter()
    with _mock_v1_quantizers(sim):
        algo = GreedyMixedPrecisionAlgo(sim, dummy, candidates, CallbackFunc(evaluate, None),
                                        CallbackFunc(evaluate, None), workdir, True, CallbackFunc(forward, None),
                                        True, False, True)
        algo.run(None, AMPSearchAlgo.BruteForce)
    seconds = time.perf_counter() - t0
    base_bits = int(algo.baseline_candidate[1][0])
    base_score = next(s for s, c in algo._eval_scores if c == algo.baseline_candidate)  # noqa: SLF001
    steps = [([n for n in group.parameter_quantizers if n in names], int(cand[1][0]), acc, rel)
             for rel, acc, group, cand in algo.pareto_list]
    curve = replay_curve(dict.fromkeys(names, base_bits), steps, start_score=base_score)
    # AIMET leaves the sim at the last point (BruteForce, no drop): its weight widths must match the replay
    final = {n: int(getattr(sim.model, n).param_quantizers["weight"].bitwidth) for n in names}
    if final != curve[-1]["bits"]:
        raise AssertionError(f"replayed last point {curve[-1]['bits']} != AIMET's final sim {final}")
    # AIMET's other answer: every layer at its lowest candidate (what run() returns when that meets the drop);
    # the curve itself need not reach it (later steps can raise a layer again)
    min_bits = int(algo.min_candidate[1][0])
    curve.append({"bits": dict.fromkeys(names, min_bits), "score": float(algo.min_accuracy),
                  "rel_bitops": min_bits / base_bits, "step": "lowest candidate"})
    return {"curve": curve, "baseline_bits": base_bits, "fp32_score": algo.fp32_accuracy, "seconds": seconds,
            "uniform_scores": {str(c[1][0]): s for s, c in algo._eval_scores}}  # noqa: SLF001


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["narrow_cnn", "denoise"], choices=["narrow_cnn", "small_cnn", "denoise"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--score", choices=["metric", "loss"], default="metric")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    stubbed = stub_torchvision()
    from importlib.metadata import version

    import torch
    from torch import nn

    from mpsearch.demo import batches, evaluate
    from mpsearch.demo.images import load_denoise_run, psnr
    from mpsearch.demo.narrow import load_narrow_run
    from mpsearch.demo.train import load_demo_run
    from mpsearch.pipeline.guard import mean_loss

    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    peer = "aimet-amp" + ("-loss" if args.score == "loss" else "")
    for task in args.tasks:
        for seed in args.seeds:
            # the same data as bench_decisions.load_task: calibration = train batches 0-1, validation split
            run = (load_narrow_run(seed=seed) if task == "narrow_cnn" else load_denoise_run(seed=seed)
                   if task == "denoise" else load_demo_run("small_cnn", seed=seed))
            loss_fn, metric, bs, scale = ((nn.CrossEntropyLoss(), evaluate, 256, 100.0) if task != "denoise"
                                          else (nn.MSELoss(), psnr, 128, 1.0))
            calib = list(batches(run.splits.train, 128, shuffle=True, seed=seed))[:2]
            val = list(batches(run.splits.val, bs))
            score = ((lambda m: scale * metric(m, val)) if args.score == "metric"
                     else (lambda m: -mean_loss(m.eval(), loss_fn, val)))
            names = [n for n, m in run.model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
            record: dict[str, Any] = {"peer": peer, "version": version("aimet-torch"), "torch": torch.__version__,
                                      "score": f"{args.score} on the validation split ({len(run.splits.val)} examples)",
                                      "torchvision_stub": stubbed, "notes": {}}
            try:
                with tempfile.TemporaryDirectory(prefix="aimet-amp-") as work:
                    record.update(aimet_curve(run.model, names, run.splits.example_inputs(1)[0], calib, score, work))
                print(f"{peer} {task} seed {seed}: {len(record['curve'])} points, baseline w{record['baseline_bits']}, "
                      f"{record['seconds']:.1f} s", flush=True)
            except Exception as exc:  # recorded, printed by bench_decisions.py as "did not run"
                record["notes"]["error"] = f"{type(exc).__name__}: {exc}"
                print(f"{peer} {task} seed {seed}: did not run: {record['notes']['error']}", flush=True)
            (OUT / f"{peer}_{task}_s{seed}.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
