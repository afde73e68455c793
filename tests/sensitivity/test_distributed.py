"""Probes split over 2 gloo processes give the single-process estimate with the same seeds."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from mpsearch.errors import ConfigError
from mpsearch.sensitivity import HessianConfig, analyze


def _problem():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4)).double()
    x = torch.randn(20, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (20,))
    return model, [(x[:12], y[:12]), (x[12:], y[12:])]


CONFIGS = {
    "fixed": dict(min_probes=12, max_probes=12, probes_per_batch=6),
    "adaptive": dict(rel_stderr_target=0.1, max_probes=200, probes_per_batch=6, activations=True),
}


def _run(config_name: str, distributed: bool):
    model, batches = _problem()
    cfg = HessianConfig(seed=7, distributed=distributed, **CONFIGS[config_name])
    sens = analyze(model, nn.CrossEntropyLoss(), batches, config=cfg)
    return {n: [sens[n].trace, sens[n].trace_stderr, sens[n].n_probes, sens[n].activation_trace] for n in sens}


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        out = {name: _run(name, True) for name in CONFIGS}
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(out, f)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for name in CONFIGS:
        single = _run(name, False)
        for got in ranks:
            assert set(got[name]) == set(single)
            for layer, vals in single.items():
                g = got[name][layer]
                assert g[2] == vals[2]  # same probe counts: same stopping decisions
                assert g[0] == pytest.approx(vals[0], rel=1e-12)
                assert g[1] == pytest.approx(vals[1], rel=1e-9)
                if vals[3] is not None:
                    assert g[3] == pytest.approx(vals[3], rel=1e-12)


def test_distributed_without_process_group_is_a_clear_error():
    model, batches = _problem()
    with pytest.raises(ConfigError, match="init_process_group"):
        analyze(model, nn.CrossEntropyLoss(), batches, distributed=True)
