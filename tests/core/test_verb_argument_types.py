"""The public verbs check their arguments' types (#18 item 2): a wrong type is a ConfigError naming the
verb, the argument and the rule, not an AttributeError from deep inside."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mpsearch as mps
from mpsearch.core.cost_table import CostTable


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    x = torch.randn(8, 1, 8, 8)
    batches = [(x, torch.randint(0, 3, (8,)))]
    layers = mps.discover(m, x)
    sens = mps.analyze(m, nn.CrossEntropyLoss(), batches, method="fisher")
    return m, x, batches, layers, sens


def test_allocate_and_pareto_need_a_cost_table():
    rule = r"table must be a CostTable \(from mpsearch.cost_table or CostTable.from_records\), but got"
    with pytest.raises(mps.ConfigError, match=rf"^allocate: {rule} None$"):
        mps.allocate(None, {"size_bytes": 10})
    with pytest.raises(mps.ConfigError, match=rf"^pareto: {rule} list \[1\]$"):
        mps.pareto([1], "size_bytes")
    table = CostTable.from_records([{"layer": "a", "w_bits": 8, "a_bits": 8, "omega": 0.0, "size_bytes": 8.0}])
    with pytest.raises(mps.ConfigError, match=r"^pareto: resource must be a resource name such as 'size_bytes', "
                                              r"but got None$"):
        mps.pareto(table, None)


def test_cost_table_checks_each_argument(parts):
    m, _x, _b, layers, sens = parts
    with pytest.raises(mps.ConfigError, match=r"^cost_table: sens must be a Sensitivity \(from mpsearch.analyze\), "
                                              r"but got None$"):
        mps.cost_table(m, layers, None, "gap8-pulp-nn")
    with pytest.raises(mps.ConfigError, match=r"^cost_table: layers\[1\] must be a Layer \(from mpsearch.discover\), "
                                              r"but got 'fc'$"):
        mps.cost_table(m, [layers[0], "fc"], sens, "gap8-pulp-nn")
    with pytest.raises(mps.ConfigError, match=r"^cost_table: model must be a torch.nn.Module, but got None$"):
        mps.cost_table(None, layers, sens, "gap8-pulp-nn")
    with pytest.raises(mps.ConfigError, match=r"^cost_table: profile must be a HardwareProfile or a profile name"):
        mps.cost_table(m, layers, sens, 3)


def test_validate_checks_each_argument(parts):
    m, x, batches, layers, sens = parts
    with pytest.raises(mps.ConfigError, match=r"^validate: imodel must be an IntegerModel \(from mpsearch.to_integer\), "
                                              r"but got None$"):
        mps.validate(None, None, batches)
    prof = mps.load_profile("gap8-pulp-nn")
    plan = mps.allocate(mps.cost_table(m, layers, sens, prof, calib_batches=batches), {"size_bytes": "50%"})
    q = mps.quantize(m, plan, batches, profile=prof)
    im = mps.to_integer(q, x)
    with pytest.raises(mps.ConfigError, match=r"^validate: qmodel must be the fake-quant torch.nn.Module"):
        mps.validate(im, "q", batches)
    with pytest.raises(mps.ConfigError, match=r"^validate: batches must be an iterable of input tensors or "
                                              r"\(inputs, labels\) pairs, but got None$"):
        mps.validate(im, q, None)
    with pytest.raises(mps.ConfigError, match=r"^to_integer: example_inputs must be a tensor or a tuple of tensors"):
        mps.to_integer(q, None)


@pytest.mark.parametrize("records, ties, message", [
    (None, None, r"^t.json: records must be a list of records \{layer, w_bits, a_bits, omega, <resource>\}, but got None$"),
    ([{"layer": "a", "w_bits": "x", "a_bits": 8, "omega": 0.0}], None, r"^t.json: \[0\].w_bits must be an integer "
                                                                      r"bit-width, but got 'x'$"),
    ([{"layer": "a", "w_bits": 8, "a_bits": None, "omega": 0.0}], None, r"^t.json: \[0\].a_bits must be an integer "
                                                                       r"bit-width, but got None$"),
    ([{"layer": "a", "w_bits": 8, "a_bits": 8, "omega": 0.0, 3: 1.0}], None, r"^t.json: \[0\] must be a mapping with "
                                                                            r"string keys"),
    ([{"layer": "a", "w_bits": 8, "a_bits": 8, "omega": 0.0}], 5, r"^t.json: ties must be a list of lists of layer "
                                                                  r"names, but got 5$"),
])
def test_cost_table_records_found_by_the_fuzz_suite(records, ties, message):
    """Cost-table files the fuzz suite found raising TypeError / ValueError (tests/fuzz)."""
    with pytest.raises(mps.ConfigError, match=message):
        CostTable.from_records(records, ties=ties, where="t.json")


def test_plan_files_found_by_the_fuzz_suite(tmp_path):
    """Plan files the fuzz suite found raising TypeError (tests/fuzz); a NaN total saved as null reads back."""
    import yaml

    from mpsearch.core.plan import BitPlan

    base = {"version": 1, "layers": {"a": {"w_bits": 8, "a_bits": 8}}}
    for extra, message in [({"totals": {"size_bytes": "x"}}, r"totals.size_bytes must be a number or None, but got 'x'"),
                           ({"objective": [1]}, r"objective must be a number or None, but got \[1\]"),
                           ({"meta": [1]}, r"meta must be a mapping, but got \[1\]")]:
        (tmp_path / "p.yaml").write_text(yaml.safe_dump({**base, **extra}))
        with pytest.raises(mps.ConfigError, match=rf"^{tmp_path / 'p.yaml'}: {message}$"):
            BitPlan.load(tmp_path / "p.yaml")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({**base, "totals": {"size_bytes": None}}))
    assert BitPlan.load(tmp_path / "p.yaml").totals["size_bytes"] != BitPlan.load(tmp_path / "p.yaml").totals["size_bytes"]


def test_analyze_checks_its_loss_and_batches(parts):
    m, _x, batches, _layers, _sens = parts
    with pytest.raises(mps.ConfigError, match=r"^analyze: loss_fn must be a callable loss_fn\(outputs, targets\) -> "
                                              r"scalar tensor, but got None$"):
        mps.analyze(m, None, batches, method="fisher")
    with pytest.raises(mps.ConfigError, match=r"^analyze: batches must be an iterable of batches, but got 3$"):
        mps.analyze(m, nn.CrossEntropyLoss(), 3, method="fisher")
