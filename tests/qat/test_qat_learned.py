"""LSQ / LSQ+ / PACT learned ranges: exact at the start, trained, then written back to the buffers."""

import pytest
import torch
from torch import nn

from mpsearch.core import BitPlan
from mpsearch.errors import ConfigError
from mpsearch.qat import FinetuneConfig, finetune_
from mpsearch.quant import ActQuant, WeightQuant, quantize
from mpsearch.quant.learned import LearnedRange, commit_learned_ranges_, enable_learned_ranges_
from mpsearch.quant.quantizer import fake_quantize
from mpsearch.quant.spec import QuantSpec


def _model_and_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = torch.randn(64, 6)
    y = model(x).argmax(1)
    qmodel = quantize(model, BitPlan.uniform(["0", "2"], 4, 4), [x[:32]])
    return qmodel, x, y


@pytest.mark.parametrize("kind", ["lsq", "lsq+", "pact"])
def test_learned_ranges_start_exactly_at_the_calibrated_quantizer(kind):
    qmodel, x, _ = _model_and_data()
    before = qmodel(x)
    n = enable_learned_ranges_(qmodel, kind)
    assert n == (4 if kind != "pact" else 2)  # 2 activation quantizers (+ 2 weight quantizers for LSQ)
    assert torch.allclose(qmodel(x), before, atol=1e-6)


def test_pact_alpha_gets_gradient_one_per_clipped_element():
    spec = QuantSpec(bits=4, symmetric=False, signed=True)
    lr = LearnedRange("pact", spec, torch.tensor(0.1), torch.tensor(-8, dtype=torch.int32))  # range [0, 1.5]
    x = torch.tensor([2.0, 3.0, 1.7, 0.3])
    lr(x).sum().backward()
    assert float(lr.alpha) == pytest.approx(1.5)
    # three inputs above alpha each pass gradient 1; 0.3 sits on a code (0.3 = 3 steps): no rounding term
    assert float(lr.alpha.grad) == pytest.approx(3.0, abs=1e-5)


@pytest.mark.parametrize("kind", ["lsq", "lsq+", "pact"])
def test_finetune_with_learned_ranges_trains_and_writes_them_back(kind):
    qmodel, x, y = _model_and_data()
    scales = {n: m.scale.clone() for n, m in qmodel.named_modules() if isinstance(m, (ActQuant, WeightQuant))}
    rec = finetune_(qmodel, [(x, y)], FinetuneConfig(epochs=3, lr=0.05, learned_ranges=kind))
    assert rec["n_learned_ranges"] == (4 if kind != "pact" else 2)
    quants = {n: m for n, m in qmodel.named_modules() if isinstance(m, (ActQuant, WeightQuant))}
    assert all(m.learned is None for m in quants.values())  # plain quantizers again
    assert any(not torch.equal(quants[n].scale, s) for n, s in scales.items())  # something was learned
    for m in quants.values():  # integer zero points within the code range
        assert m.zero_point.dtype == torch.int32
        assert int(m.zero_point.min()) >= m.spec.qmin and int(m.zero_point.max()) <= m.spec.qmax
    act = next(m for m in quants.values() if isinstance(m, ActQuant))
    z = torch.randn(5, 16)
    assert torch.equal(act(z), fake_quantize(z, act.scale, act.zero_point, act.spec))
    assert commit_learned_ranges_(qmodel) == 0


def test_unknown_learned_range_is_refused_listing_the_choices():
    with pytest.raises(ConfigError, match="FinetuneConfig: learned_ranges must be one of none, lsq, lsq\\+, pact"):
        FinetuneConfig(learned_ranges="lsqq")
