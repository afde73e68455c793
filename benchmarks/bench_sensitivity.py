"""Benchmark: time and memory to reach a per-layer relative standard error on every layer.

Compares the Hutchinson strategies of ``mpsearch.sensitivity`` against the layer-by-layer
loop that HAWQ/PyHessian-style code runs (one layer at a time, one probe per forward/backward,
same stopping rule), on ResNet-style models defined here (torchvision is not required).

    python benchmarks/bench_sensitivity.py                       # CPU, ResNet-style 16x16
    python benchmarks/bench_sensitivity.py --device cuda --models resnet18 resnet50
    python benchmarks/bench_sensitivity.py --fair --threads 1   # #17 target 3: vs the fair loop

``--fair`` compares ``analyze(method="hessian")`` (``--fair-variants``: "analyze" = Hutchinson
probes, "auto" = ``trace_estimator="auto"``, curvature sites) with the fair loop (the gradient graph built
once with create_graph and reused for every probe, one restricted HVP per probe and layer,
each layer stopped at 5% relative standard error) on resnet_tiny, 8- and 16-layer MLPs and
gpt_tiny, in interleaved fresh processes; it prints time, ratio, probes and seconds per
layer, layers at 5%, the largest deviation from a long reference run in combined standard
errors, and peak memory against one training step; writes ``results/bench_sensitivity_fair.json``.

Prints a table and writes ``benchmarks/results/bench_sensitivity[_<device>].json``.
Memory: CUDA peak allocated bytes; on CPU the peak RSS growth (VmHWM after resetting it,
minus VmRSS before) of a fresh subprocess.
Both are reported relative to one plain training step (forward, backward, SGD update) of
the same model and batch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

from mpsearch.sensitivity import HessianConfig, analyze

# -- models ------------------------------------------------------------------------------------


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    def __init__(self, block: type, depths: list[int], widths: list[int], n_classes: int = 10, cin: int = 3,
                 stem_stride: int = 1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(cin, widths[0], 3, stem_stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        layers, c = [], widths[0]
        for i, (d, w) in enumerate(zip(depths, widths)):
            for j in range(d):
                b = block(c, w, 2 if (i > 0 and j == 0) else 1)
                layers.append(b)
                c = w * block.expansion
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = self.blocks(x)
        return self.fc(x.mean((2, 3)))


MODELS = {
    # name: (builder, input hw, channels)
    "resnet_cpu": (lambda: ResNet(Basic, [1, 1, 1], [8, 16, 32], cin=1), 16, 1),
    "resnet18": (lambda: ResNet(Basic, [2, 2, 2, 2], [64, 128, 256, 512], n_classes=100, stem_stride=2), 64, 3),
    "resnet50": (lambda: ResNet(Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], n_classes=100, stem_stride=2), 64, 3),
}


def make(name: str, device: str, batch: int, n_batches: int, seed: int = 0, state: str | None = None):
    build, hw, cin = MODELS[name]
    torch.manual_seed(seed)
    model = build().to(device)
    n_classes = model.fc.out_features
    if state and os.path.exists(state):  # trained by the parent: keep the child's peak RSS for the run
        x = torch.randn(batch * n_batches, cin, hw, hw, device=device)
        y = torch.randint(0, n_classes, (batch * n_batches,), device=device)
        model.load_state_dict(torch.load(state, map_location=device))
        model.eval()
        return model, [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(n_batches)]
    # a few SGD steps on a fixed random batch so the BN statistics and the loss are not at init
    x = torch.randn(batch * n_batches, cin, hw, hw, device=device)
    y = torch.randint(0, n_classes, (batch * n_batches,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:batch]), y[:batch]).backward()
        opt.step()
    model.eval()
    batches = [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(n_batches)]
    return model, batches


# -- measurement -------------------------------------------------------------------------------

VARIANTS = {
    # HAWQ/PyHessian-style: one layer at a time, one probe per forward/backward, plain samples
    "hawq_loop": dict(strategy="per_layer", probes_per_batch=1, vmap_probes=False, control_rank=0),
    "blockwise_vmap": dict(strategy="blockwise", probes_per_batch=16, vmap_probes=True, control_rank=0),
    "shared_vmap": dict(strategy="shared", probes_per_batch=16, vmap_probes=True, control_rank=0),
    "per_layer_cv16": dict(strategy="per_layer", probes_per_batch=16, vmap_probes=True, control_rank=16),
    # the default HessianConfig: blockwise, 8 vmapped probes per pass, Nystrom control of rank 16
    "default": dict(),
    # the earlier default: 16 vmapped probes per pass (more memory, more probes in flight)
    "default_p16": dict(probes_per_batch=16),
}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_step(model: nn.Module, batches: list, device: str) -> None:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x, y = batches[0]
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    model.eval()


def measure(args: argparse.Namespace, model_name: str, variant: str) -> dict:
    """One run in this process: seconds, peak memory (bytes above the starting point)."""
    model, batches = make(model_name, args.device, args.batch, args.n_batches, state=args.state)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _reset_cpu_peak()
    _sync(args.device)
    t0 = time.perf_counter()
    if variant == "train_step":
        train_step(model, batches, args.device)
        out: dict = {}
    else:
        cfg = HessianConfig(rel_stderr_target=args.target, max_probes=args.max_probes, min_probes=8, seed=0,
                            **VARIANTS[variant])
        sens = analyze(model, nn.CrossEntropyLoss(), batches, config=cfg)
        conv = sens.meta["converged"]
        out = {"n_layers": len(sens), "converged": sum(conv.values()),
               "probes_total": sum(sens[n].n_probes for n in sens), "hvp_calls": sens.meta["hvp_calls"],
               "max_rel_stderr": max(sens[n].trace_stderr / max(abs(sens[n].trace), 1e-30) for n in sens),
               "traces": {n: sens[n].trace for n in sens}}
    _sync(args.device)
    out["seconds"] = time.perf_counter() - t0
    if args.device == "cuda":
        out["peak_bytes"] = torch.cuda.max_memory_allocated() - base
    else:
        out["peak_bytes"] = _status_bytes("VmHWM") - base
    return out


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_cpu_peak() -> int:
    """Reset the RSS high-water mark (Linux: write 5 to clear_refs); return the current RSS."""
    import gc

    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # not Linux: the peak then includes start-up
    return _status_bytes("VmRSS")


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    import numpy as np

    def ranks(x: list[float]) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        order = x.argsort()
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):  # average ties
            r[x == v] = r[x == v].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def run_spearman(args: argparse.Namespace) -> int:
    """Rank correlation between omega and the measured loss increase, per demo model and bits."""
    from mpsearch.demo import batches as demo_batches
    from mpsearch.demo import load_demo
    from mpsearch.sensitivity import EmpiricalConfig
    from mpsearch.quant.quantizer import weight_quantization_error
    from mpsearch.quant.spec import weight_spec

    out = {}
    loss_fn = nn.CrossEntropyLoss()
    for name in ("small_cnn", "resnet_tiny", "mobilenet_tiny"):
        model, splits = load_demo(name)
        calib = list(demo_batches(splits.val, 128))
        t0 = time.perf_counter()
        hess = analyze(model, loss_fn, calib, config=HessianConfig(rel_stderr_target=0.05, max_probes=1000))
        t_h = time.perf_counter() - t0
        fish = analyze(model, loss_fn, calib, method="fisher")
        emp = analyze(model, loss_fn, calib, method="empirical", config=EmpiricalConfig(w_bits=(2, 4)))
        mods = dict(model.named_modules())
        row = {"n_layers": len(hess), "hessian_seconds": t_h}
        for bits in (2, 4):
            spec = weight_spec(None, bits)
            err = {n: weight_quantization_error(mods[n].weight, bits, spec) for n in hess}
            om_h = [hess[n].trace / hess[n].n_params * err[n] for n in hess]
            om_f = [fish[n].fisher / fish[n].n_params * err[n] for n in hess]
            loss_up = [emp[n].empirical[f"w{bits}"] for n in hess]
            row[f"spearman_hessian_w{bits}"] = spearman(om_h, loss_up)
            row[f"spearman_fisher_w{bits}"] = spearman(om_f, loss_up)
        out[name] = row
        print(name, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    path = Path(__file__).parent / "results" / "bench_sensitivity_spearman.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": {"torch": torch.__version__, "calibration": "digits val split, batches of 128",
                                         "quantizer": "symmetric per-channel min-max (mpsearch.quant)"},
                                "results": out}, indent=2))
    print(f"wrote {path}")
    return 0

# -- #17 target 3: analyze vs the fair loop (graph built once, reused for every probe) ----------


class MLP(nn.Module):
    def __init__(self, depth: int, width: int = 128, cin: int = 64, n_classes: int = 10) -> None:
        super().__init__()
        dims = [cin] + [width] * (depth - 1) + [n_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i, lin in enumerate(self.layers):
            x = lin(x)
            if i < len(self.layers) - 1:
                x = torch.tanh(x)
        return x


def _lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def fair_model(name: str, batch: int, seed: int = 0, train: bool = True):
    """(model, loss_fn, [(x, y)]) after 30 Adam steps: resnet_tiny / mlp8 / mlp16 on digits, gpt_tiny on text."""
    torch.manual_seed(seed)
    if name == "gpt_tiny":
        from mpsearch.demo.lm_train import get_lm_model

        model, loss_fn = get_lm_model("gpt_tiny"), _lm_loss
        text = (Path(torch.__file__).parent / "nn" / "modules" / "module.py").read_bytes()
        # batch // 8 windows of 32 tokens (batch 128 -> 16 x 32 = 512 tokens)
        ids = torch.tensor(list(text[: 33 * 64 * 4]), dtype=torch.long).view(-1, 33)[: max(batch // 8, 1)]
        x, y = ids[:, :32], ids[:, 1:]
    else:
        from mpsearch.demo.data import load_digits_splits

        split = load_digits_splits(0).train
        x, y = split.tensors[0][:batch], split.tensors[1][:batch]
        loss_fn = nn.CrossEntropyLoss()
        if name == "resnet_tiny":
            from mpsearch.demo.models import get_model

            model = get_model("resnet_tiny")
        else:
            model = MLP(int(name[3:]))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(30 if train else 0):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    model.eval()
    return model, loss_fn, [(x, y)]


def fair_loop(model: nn.Module, loss_fn, batches: list, target: float, min_probes: int, max_probes: int,
              seed: int = 0) -> dict:
    """The fair baseline: the gradient graph built once and reused for every Rademacher probe.

    Per probe and per still-active layer one restricted HVP ``grad(g_l, W_l, v_l)`` on the
    retained graph; a layer stops when the standard error of its samples is <= ``target`` x
    |mean| (after ``min_probes``) or at ``max_probes``; same rule as ``analyze``.
    """
    from mpsearch.model import canonical_view
    from mpsearch.sensitivity.layers import select_layers

    model = canonical_view(model)
    mods = [m for _, m in select_layers(model, None, batches[0][0])]
    ws = [m.weight for m in mods]
    from torch.nn.attention import SDPBackend, sdpa_kernel

    n_total = sum(len(y) for _, y in batches)
    with sdpa_kernel(SDPBackend.MATH):  # the attention kernel with a double backward (as analyze)
        loss = sum(loss_fn(model(x), y) * (len(y) / n_total) for x, y in batches)
        grads = torch.autograd.grad(loss, ws, create_graph=True)
    gen = torch.Generator().manual_seed(seed)
    samples: list[list[float]] = [[] for _ in ws]
    active = list(range(len(ws)))
    while active:
        for l in active:
            v = torch.randint(0, 2, ws[l].shape, generator=gen).to(ws[l].dtype).mul_(2).sub_(1)
            hv = torch.autograd.grad(grads[l], ws[l], v, retain_graph=True)[0]
            samples[l].append(float((v * hv).sum()))
        still = []
        for l in active:
            s = torch.tensor(samples[l], dtype=torch.float64)
            n = len(s)
            ok = n >= min_probes and float(s.std() / n ** 0.5) <= target * abs(float(s.mean()))
            if not ok and n < max_probes:
                still.append(l)
        active = still
    out = []
    for s in samples:
        t = torch.tensor(s, dtype=torch.float64)
        out.append((float(t.mean()), float(t.std() / len(t) ** 0.5), len(t)))
    return {"layers": out}


def fair_measure(args: argparse.Namespace, model_name: str, variant: str) -> dict:
    """One run in this (fresh) process: seconds, peak RSS growth, per-layer (trace, stderr, probes).

    The model is trained by the parent and loaded here (``--state``), so the heap holds no
    training leftovers; memory runs set MALLOC_MMAP_THRESHOLD_=4096 so freed tensors leave
    the RSS and VmHWM is the peak of live tensors (to a page).
    """
    model, loss_fn, batches = fair_model(model_name, args.batch, train=False)
    model.load_state_dict(torch.load(args.state))
    model.eval()
    base = _reset_cpu_peak()
    t0 = time.perf_counter()
    if variant == "train_step":
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        model.train()
        opt.zero_grad()
        loss_fn(model(batches[0][0]), batches[0][1]).backward()
        opt.step()
        out: dict = {}
    elif variant in ("fair", "fair_ref"):
        tgt = args.target if variant == "fair" else args.ref_target
        out = fair_loop(model, loss_fn, batches, tgt, 8, args.max_probes if variant == "fair" else 10000)
    else:  # "analyze": Hutchinson probes; "auto": curvature sites (exact / per-example samples)
        extra = dict(json.loads(args.config), trace_estimator="auto" if variant == "auto" else "hutchinson")
        cfg = HessianConfig(rel_stderr_target=args.target, max_probes=args.max_probes, min_probes=8, seed=0,
                            floor_rel=0.0, **extra)
        sens = analyze(model, loss_fn, batches, config=cfg)
        se = [sens[n].trace_stderr for n in sens]
        out = {"layers": [(sens[n].trace, float("inf") if e is None else e, sens[n].n_probes) for n, e in zip(sens, se)],
               "site_blocker": sens.meta.get("site_blocker"), "probed_layers": sens.meta.get("probed_layers")}
    out["seconds"] = time.perf_counter() - t0
    out["peak_bytes"] = _status_bytes("VmHWM") - base
    return out


def run_fair(args: argparse.Namespace) -> int:
    """fair loop vs analyze, interleaved repetitions in fresh processes; median time; precision check."""
    import statistics
    import subprocess

    import tempfile

    tmp = tempfile.mkdtemp()

    def child(model_name: str, variant: str, memory: bool = False) -> dict:
        cmd = [sys.executable, __file__, "--fair", "--batch", str(args.batch), "--target", str(args.target),
               "--max-probes", str(args.max_probes), "--ref-target", str(args.ref_target),
               "--threads", str(args.threads or 1), "--config", args.config, "--state", os.path.join(tmp, model_name + ".pt"),
               "--one", model_name, variant]
        env = dict(os.environ, **({"MALLOC_MMAP_THRESHOLD_": "4096"} if memory else {}))
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        return json.loads(res.stdout.strip().splitlines()[-1])

    load = os.getloadavg()
    results = {}
    for m in args.models or ["resnet_tiny", "mlp8", "mlp16", "gpt_tiny"]:
        torch.save(fair_model(m, args.batch)[0].state_dict(), os.path.join(tmp, m + ".pt"))
        cands = list(args.fair_variants)
        runs: dict[str, list] = {v: [] for v in ["fair", *cands]}
        for _ in range(args.reps):  # interleaved
            for v in runs:
                runs[v].append(child(m, v))
        mem = {v: child(m, v, memory=True)["peak_bytes"] / 2 ** 20 for v in ("train_step", *runs)}
        ref = child(m, "fair_ref")
        row = {"reference": ref["layers"]}
        for v in runs:
            rs = runs[v]
            sec = statistics.median(r["seconds"] for r in rs)
            last = rs[-1]["layers"]
            n_l = len(last)
            # an exact trace (stderr 0) is compared with the reference's own error (den 0: both exact)
            z = [abs(t - rt) / den if (den := (se ** 2 + rse ** 2) ** 0.5) > 0 else 0.0
                 for (t, se, _), (rt, rse, _) in zip(last, ref["layers"])]
            row[v] = {"seconds": sec, "all_seconds": [r["seconds"] for r in rs],
                      "probes_per_layer": sum(p for *_, p in last) / n_l, "seconds_per_layer": sec / n_l,
                      "site_blocker": rs[-1].get("site_blocker"), "probed_layers": rs[-1].get("probed_layers"),
                      "max_rse": max(se / abs(t) for t, se, _ in last),
                      "layers_at_target": sum(se <= args.target * abs(t) * 1.0000001 for t, se, _ in last),
                      "n_layers": n_l, "max_z_vs_reference": max(z),
                      "peak_mib": mem[v]}
        row["train_step_peak_mib"] = mem["train_step"]
        for v in runs:
            row[v]["memory_vs_train_step"] = row[v]["peak_mib"] / max(row["train_step_peak_mib"], 1e-9)
        f = row["fair"]
        for v in cands:
            a = row[v]
            a["speedup"] = f["seconds"] / a["seconds"]
            print(f"{m:12s} fair {f['seconds']:7.2f}s  {v} {a['seconds']:7.2f}s  x{a['speedup']:5.2f}  "
                  f"probes/layer {f['probes_per_layer']:6.1f} / {a['probes_per_layer']:6.1f}  "
                  f"s/layer {f['seconds_per_layer']:.3f} / {a['seconds_per_layer']:.3f}  "
                  f"at 5% {f['layers_at_target']}/{f['n_layers']} / {a['layers_at_target']}/{a['n_layers']}  "
                  f"max z {f['max_z_vs_reference']:.1f} / {a['max_z_vs_reference']:.1f}  "
                  f"mem/step {f['memory_vs_train_step']:.2f} / {a['memory_vs_train_step']:.2f} "
                  f"(step {row['train_step_peak_mib']:.1f} MiB)", flush=True)
        results[m] = row
    meta = {"torch": torch.__version__, "threads": args.threads or 1, "batch": args.batch, "target": args.target,
            "reps": args.reps, "load_before": load, "load_after": os.getloadavg(), "ref_target": args.ref_target}
    path = Path(args.out) if args.out else Path(__file__).parent / "results" / "bench_sensitivity_fair.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {path}  load {load} -> {os.getloadavg()}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--models", nargs="+", default=None)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--n-batches", type=int, default=2)
    p.add_argument("--target", type=float, default=0.05)
    p.add_argument("--max-probes", type=int, default=2000)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--spearman", action="store_true",
                   help="rank correlation of omega vs the measured loss increase on the digits demo models")
    p.add_argument("--fair", action="store_true",
                   help="#17 target 3: analyze vs the fair loop on resnet_tiny, mlp8, mlp16, gpt_tiny")
    p.add_argument("--config", default="{}", help="--fair: extra HessianConfig fields for analyze, as JSON")
    p.add_argument("--reps", type=int, default=3, help="--fair: interleaved repetitions (median)")
    p.add_argument("--fair-variants", nargs="+", default=["analyze", "auto"], choices=["analyze", "auto"],
                   help="--fair: analyze runs to compare with the fair loop (analyze: Hutchinson probes; "
                        "auto: trace_estimator='auto', curvature sites)")
    p.add_argument("--ref-target", type=float, default=0.02, help="--fair: target of the long reference run")
    p.add_argument("--out", default=None, help="results JSON (default results/bench_sensitivity[_cuda].json)")
    p.add_argument("--state", default=None, help=argparse.SUPPRESS)
    p.add_argument("--one", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_sensitivity: --device cuda asked for but CUDA is not available; skipping")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.spearman:
        return run_spearman(args)
    if args.fair:
        if args.batch is None:
            args.batch = 128
        if args.one:
            print(json.dumps(fair_measure(args, *args.one)))
            return 0
        return run_fair(args)
    if args.batch is None:
        args.batch = 32 if args.device == "cpu" else 64
    if args.models is None:
        args.models = ["resnet_cpu"] if args.device == "cpu" else ["resnet18", "resnet50"]
    if args.one:  # child process: one measurement, JSON on stdout
        print(json.dumps(measure(args, *args.one)))
        return 0
    results = []
    import tempfile

    tmp = tempfile.mkdtemp()
    for model_name in args.models:
        rows = {}
        state = os.path.join(tmp, f"{model_name}.pt")
        if args.device == "cpu":
            torch.save(make(model_name, "cpu", args.batch, args.n_batches)[0].state_dict(), state)
        for variant in ["train_step", *args.variants]:
            if args.device == "cpu":  # fresh process so that peak RSS belongs to this run alone
                import subprocess

                cmd = [sys.executable, __file__, "--device", "cpu", "--batch", str(args.batch), "--n-batches",
                       str(args.n_batches), "--target", str(args.target), "--max-probes", str(args.max_probes),
                       "--state", state, "--one", model_name, variant] + (["--threads", str(args.threads)] if args.threads else [])
                res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                rows[variant] = json.loads(res.stdout.strip().splitlines()[-1])
            else:
                rows[variant] = measure(args, model_name, variant)
            r = rows[variant]
            print(f"{model_name:11s} {variant:15s} {r['seconds']:9.2f} s  peak {r['peak_bytes'] / 2**20:8.1f} MiB"
                  + (f"  converged {r['converged']}/{r['n_layers']}  probes {r['probes_total']}  "
                     f"hvp_calls {r['hvp_calls']}" if "n_layers" in r else ""), flush=True)
        # below 1 MiB the CPU RSS high-water mark cannot resolve a training step: no ratio
        step_mem = rows["train_step"]["peak_bytes"] if rows["train_step"]["peak_bytes"] >= 2**20 else None
        base_t = rows.get("hawq_loop", {}).get("seconds")
        for v, r in rows.items():
            r["memory_vs_train_step"] = r["peak_bytes"] / step_mem if step_mem else None
            if base_t and v != "train_step":
                r["speedup_vs_hawq_loop"] = base_t / r["seconds"]
        results.append({"model": model_name, "rows": rows})
    print()
    print(f"{'model':11s} {'variant':15s} {'seconds':>9s} {'speed-up':>9s} {'mem/step':>9s} {'converged':>10s}")
    for res in results:
        for v, r in res["rows"].items():
            if v == "train_step":
                continue
            mem = r["memory_vs_train_step"]
            print(f"{res['model']:11s} {v:15s} {r['seconds']:9.2f} {r.get('speedup_vs_hawq_loop', float('nan')):9.2f} "
                  f"{mem if mem is not None else float('nan'):9.2f} {r['converged']:>4d}/{r['n_layers']:<4d}")
    meta = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "batch": args.batch, "n_batches": args.n_batches, "target": args.target, "max_probes": args.max_probes,
            "cuda_name": torch.cuda.get_device_name() if args.device == "cuda" else None}
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / (
        "bench_sensitivity.json" if args.device == "cpu" else f"bench_sensitivity_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
