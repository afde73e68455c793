"""The sensitivity cache: a rerun returns the stored result without measuring, and a change to the
weights, the data, the method config, the layers, the loss or the package version measures again."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch

import mpsearch
from mpsearch.sensitivity import HessianConfig, analyze
from mpsearch.sensitivity.cache import SensitivityCache, cache_key
from mpsearch.sensitivity.methods import METHODS

CONFIG = HessianConfig(min_probes=4, max_probes=8, seed=0)


@pytest.fixture()
def runs(monkeypatch):
    """Counts the Hessian method's measurements (each ``run`` is one full measurement)."""
    cls = METHODS["hessian"]
    original = cls.run
    calls = []

    def counting(self, ctx, config):
        calls.append(config)
        return original(self, ctx, config)

    monkeypatch.setattr(cls, "run", counting)
    return calls


def _copy(tiny):
    model, batches, loss_fn, names = tiny
    m = type(model)().double()
    m.load_state_dict(model.state_dict())
    return m, [(x.clone(), y.clone()) for x, y in batches], loss_fn


def test_rerun_is_served_from_disk_and_equals_the_measurement(tiny, tmp_path, runs, caplog):
    model, batches, loss_fn = _copy(tiny)
    first = analyze(model, loss_fn, batches, config=CONFIG, cache_dir=tmp_path)
    assert len(runs) == 1
    assert len(list(tmp_path.glob("*.json"))) == 1
    with caplog.at_level(logging.INFO, logger="mpsearch"):
        # a fresh model object with the same weights, a generator of copies of the data, and another
        # progress callback (not part of the key): still the same inputs
        again = analyze(_copy(tiny)[0], loss_fn, (b for b in _copy(tiny)[1]), config=replace(CONFIG, progress=print),
                        cache_dir=tmp_path)
    assert len(runs) == 1, "a cache hit must not measure"
    assert "reused from the cache" in caplog.text
    assert again.to_dict() == first.to_dict()  # bit-exact floats through JSON
    assert again.method == "hessian" and list(again) == ["conv", "fc1", "fc2"]
    # without cache_dir nothing is read or written
    plain = analyze(model, loss_fn, batches, config=CONFIG)
    assert len(runs) == 2 and plain.to_dict()["layers"] == first.to_dict()["layers"]


def _changed_weight(model, batches, loss_fn):
    with torch.no_grad():
        model.fc1.weight[2, 3] += 1e-3
    return model, batches, loss_fn, CONFIG, None


def _changed_buffer_free_bias(model, batches, loss_fn):
    with torch.no_grad():
        model.fc2.bias[0] += 1e-6  # not an analysed weight, but the loss depends on it
    return model, batches, loss_fn, CONFIG, None


def _changed_data(model, batches, loss_fn):
    batches[1][0][4, 0, 2, 2] += 1e-3
    return model, batches, loss_fn, CONFIG, None


def _changed_target(model, batches, loss_fn):
    y = batches[2][1]
    y[0] = (y[0] + 1) % 3
    return model, batches, loss_fn, CONFIG, None


def _changed_config(model, batches, loss_fn):
    return model, batches, loss_fn, replace(CONFIG, max_probes=9), None


def _changed_seed(model, batches, loss_fn):
    return model, batches, loss_fn, replace(CONFIG, seed=1), None


def _changed_layers(model, batches, loss_fn):
    return model, batches, loss_fn, CONFIG, ["conv", "fc1"]


def _changed_loss(model, batches, loss_fn):
    return model, batches, torch.nn.CrossEntropyLoss(label_smoothing=0.1), CONFIG, None


@pytest.mark.parametrize("change", [_changed_weight, _changed_buffer_free_bias, _changed_data, _changed_target,
                                    _changed_config, _changed_seed, _changed_layers, _changed_loss])
def test_any_changed_input_measures_again(tiny, tmp_path, runs, change):
    model, batches, loss_fn = _copy(tiny)
    first = analyze(model, loss_fn, batches, config=CONFIG, cache_dir=tmp_path)
    m2, b2, l2, c2, layers = change(*_copy(tiny))
    second = analyze(m2, l2, b2, config=c2, layers=layers, cache_dir=tmp_path)
    assert len(runs) == 2, f"{change.__name__}: a changed input must not be served from the cache"
    assert len(list(tmp_path.glob("*.json"))) == 2
    # the new result is the measurement of the new inputs, not the old one
    fresh = analyze(m2, l2, b2, config=c2, layers=layers)
    assert second.to_dict()["layers"] == fresh.to_dict()["layers"]
    if change is not _changed_layers:
        assert second.to_dict()["layers"] != first.to_dict()["layers"]


def test_package_version_is_part_of_the_key(tiny, monkeypatch):
    model, batches, loss_fn = _copy(tiny)
    k1 = cache_key(model, loss_fn, batches, "hessian", CONFIG)
    monkeypatch.setattr(mpsearch, "__version__", "999.0")
    assert cache_key(model, loss_fn, batches, "hessian", CONFIG) != k1


def test_other_method_or_lambda_body_is_another_key(tiny):
    model, batches, loss_fn = _copy(tiny)
    assert cache_key(model, loss_fn, batches, "hessian", CONFIG) != cache_key(model, loss_fn, batches, "fisher", CONFIG)
    scale = 1.0
    f1 = lambda out, y: scale * torch.nn.functional.cross_entropy(out, y)  # noqa: E731
    k1 = cache_key(model, f1, batches, "hessian", CONFIG)
    scale = 2.0  # a captured value changed
    assert cache_key(model, f1, batches, "hessian", CONFIG) != k1
    f2 = lambda out, y: torch.nn.functional.cross_entropy(out, y) * 2  # noqa: E731
    assert cache_key(model, f2, batches, "hessian", CONFIG) != k1


def test_damaged_cache_file_is_measured_again_and_rewritten(tiny, tmp_path, runs, caplog):
    model, batches, loss_fn = _copy(tiny)
    first = analyze(model, loss_fn, batches, config=CONFIG, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.json")
    path.write_text('{"format": 1, "key": "trunc')  # what a torn, non-atomic write would leave
    with caplog.at_level(logging.WARNING, logger="mpsearch"):
        again = analyze(model, loss_fn, batches, config=CONFIG, cache_dir=tmp_path)
    assert len(runs) == 2 and "unreadable" in caplog.text
    assert again.to_dict()["layers"] == first.to_dict()["layers"]
    key = path.stem
    assert SensitivityCache(tmp_path).load(key).to_dict() == again.to_dict()
