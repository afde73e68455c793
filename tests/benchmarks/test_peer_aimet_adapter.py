"""The AIMET AMP peer adapter (benchmarks/peers/run_aimet.py) without aimet installed.

- ``replay_curve`` rebuilds every point of AIMET's Pareto curve from its steps (later steps
  override, activation-only groups change nothing), checked on a hand-made curve and on the
  committed curves AIMET 2.42 wrote: every replayed point's BitOps, recomputed by hand from
  the layers' MACs (AIMET: sum of MACs x activation bits x weight bits, relative to the
  baseline), equals the relative BitOps AIMET reported for it.
- ``pick_point`` maps a size budget onto the curve: the best AIMET score among the points that
  fit, ties to the earlier point, hand-computed sizes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
PEER_FILES = sorted((ROOT / "benchmarks" / "results" / "peers").glob("aimet-amp*_s*.json"))


@pytest.fixture(scope="module")
def adapter():
    spec = importlib.util.spec_from_file_location("run_aimet_for_test", ROOT / "benchmarks" / "peers" / "run_aimet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_importing_the_adapter_does_not_import_aimet(adapter):
    import sys

    assert "aimet_torch" not in sys.modules


def test_replay_applies_steps_in_order_and_later_steps_override(adapter):
    start = {"a": 8, "b": 8, "c": 8}
    steps = [(["b"], 4, 0.97, 0.9), ([], 4, 0.97, 0.9), (["a"], 3, 0.95, 0.8), (["b"], 2, 0.90, 0.6),
             (["b"], 4, 0.93, 0.7)]  # an activation-only group, then b goes down to 2 and back up to 4
    curve = adapter.replay_curve(start, steps, start_score=0.98)
    assert [p["bits"] for p in curve] == [
        {"a": 8, "b": 8, "c": 8}, {"a": 8, "b": 4, "c": 8}, {"a": 8, "b": 4, "c": 8},
        {"a": 3, "b": 4, "c": 8}, {"a": 3, "b": 2, "c": 8}, {"a": 3, "b": 4, "c": 8}]
    assert [p["score"] for p in curve] == [0.98, 0.97, 0.97, 0.95, 0.90, 0.93]
    assert [p["step"] for p in curve] == [None, 0, 1, 2, 3, 4]
    assert start == {"a": 8, "b": 8, "c": 8}  # not mutated
    with pytest.raises(KeyError, match="'d'"):
        adapter.replay_curve(start, [(["d"], 4, 0.9, 0.9)])


def _size(bits):
    # a hand-made size: layer a has 100 weights, b 10, c 1; bytes = weights x bits / 8
    return (100 * bits["a"] + 10 * bits["b"] + bits["c"]) / 8


CURVE = [{"bits": {"a": 8, "b": 8, "c": 8}, "score": 0.98, "rel_bitops": 1.0},   # 111.0 B
         {"bits": {"a": 4, "b": 8, "c": 8}, "score": 0.97, "rel_bitops": 0.6},   # 61.0 B
         {"bits": {"a": 4, "b": 4, "c": 8}, "score": 0.95, "rel_bitops": 0.5},   # 56.0 B
         {"bits": {"a": 4, "b": 4, "c": 2}, "score": 0.96, "rel_bitops": 0.45},  # 55.25 B (scores higher)
         {"bits": {"a": 2, "b": 4, "c": 2}, "score": 0.80, "rel_bitops": 0.3},   # 30.25 B
         {"bits": {"a": 2, "b": 2, "c": 2}, "score": 0.80, "rel_bitops": 0.2}]   # 27.75 B


@pytest.mark.parametrize("budget, index", [(200.0, 0), (111.0, 0), (110.9, 1), (61.0, 1), (60.9, 3), (56.0, 3),
                                           (55.25, 3), (55.0, 4), (30.25, 4), (30.0, 5), (27.75, 5)])
def test_pick_point_takes_the_best_score_that_fits(adapter, budget, index):
    i, point = adapter.pick_point(CURVE, _size, budget)
    assert i == index and point is CURVE[index]
    assert _size(point["bits"]) <= budget


def test_pick_point_none_when_nothing_fits_and_unscored_start_only_as_last_resort(adapter):
    assert adapter.pick_point(CURVE, _size, 27.7) is None
    curve = [{"bits": {"a": 2, "b": 2, "c": 2}, "score": None, "rel_bitops": 1.0}, *CURVE[4:]]
    assert adapter.pick_point(curve, _size, 30.0)[0] == 2  # scored point beats the unscored start
    assert adapter.pick_point(curve[:1], _size, 30.0)[0] == 0


def _macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """MACs per conv / linear layer: output elements x (in_channels / groups x kernel area, or in_features)."""
    macs, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            hooks.append(m.register_forward_hook(lambda mod, i, o, n=name, k=k: macs.__setitem__(n, o[0].numel() * k)))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lambda mod, i, o, n=name: macs.__setitem__(n, o[0].numel() * mod.in_features)))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return macs


@pytest.mark.skipif(not PEER_FILES, reason="no AIMET curve committed under benchmarks/results/peers")
@pytest.mark.parametrize("path", PEER_FILES, ids=lambda p: p.stem)
def test_committed_curves_replay_to_aimets_own_bitops(path):
    from mpsearch.demo.images import DenoiseNet
    from mpsearch.demo.models import SmallCNN
    from mpsearch.demo.narrow import NarrowCNN

    got = json.loads(path.read_text())
    if "error" in got.get("notes", {}):
        pytest.skip(f"AIMET did not run: {got['notes']['error']}")
    model, x = {"narrow_cnn": (NarrowCNN(), torch.zeros(1, 1, 8, 8)), "small_cnn": (SmallCNN(), torch.zeros(1, 1, 8, 8)),
                "denoise": (DenoiseNet(), torch.zeros(1, 1, 16, 16))}[path.stem.rsplit("_s", 1)[0].split("_", 1)[1]]
    macs = _macs(model, x)
    curve = got["curve"]
    base = curve[0]["bits"]
    assert set(base) == set(macs) and set(base.values()) == {got["baseline_bits"]}
    assert len(curve) >= 1 + 3 * len(macs)  # every layer at each of the 3 candidates below the baseline
    full = sum(macs[n] * 16 * b for n, b in base.items())
    for point in curve[1:]:
        ours = sum(macs[n] * 16 * b for n, b in point["bits"].items()) / full
        assert ours == pytest.approx(point["rel_bitops"], rel=1e-9), point
