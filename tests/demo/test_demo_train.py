"""Training, evaluation and the checkpoint cache of the demo models."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest
import torch
from torch import nn

from mpsearch.demo import (
    DEMO_MODELS,
    DEMO_TRAIN_CONFIGS,
    TrainConfig,
    batches,
    cache_root,
    checkpoint_path,
    evaluate,
    get_model,
    load_demo,
    load_demo_run,
    load_digits_splits,
    train,
)
from mpsearch.errors import ConfigError, UnknownNameError

# The package re-exports the function `train`, which hides the submodule of the same name
# from `import mpsearch.demo.train as ...`; take the module itself from the import system.
train_mod = importlib.import_module("mpsearch.demo.train")


@pytest.fixture(scope="module")
def splits():
    return load_digits_splits()


def _fake_train(calls: list[str]):
    """A stand-in for ``train`` that records the call and leaves the weights as they are."""

    def fake(model, splits, epochs, lr, seed, **kwargs):
        calls.append(type(model).__name__)
        model.eval()
        return {"train_loss": [0.0], "val_accuracy": 0.0, "test_accuracy": 0.0, "train_time_s": 0.0, "train_cpu_s": 0.0, "n_steps": 0}

    return fake


# ---- the real training (session fixture, trains each model once) ----------------------------


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_trained_model_reaches_95_percent_test_accuracy(name, demo_runs):
    run = demo_runs[name]
    assert not run.model.training
    accuracy = evaluate(run.model, batches(run.splits.test, 64))
    # Measured 0.9805 / 0.9833 / 0.9861 (small_cnn / resnet_tiny / mobilenet_tiny) on torch 2.13 CPU.
    assert accuracy >= 0.95, f"{name}: test accuracy {accuracy:.4f}"
    assert accuracy == pytest.approx(run.info["test_accuracy"], abs=1e-12)
    assert round(accuracy * 359) == pytest.approx(accuracy * 359, abs=1e-9)  # a count over 359 images
    assert run.info["n_params"] == sum(p.numel() for p in run.model.parameters())
    assert run.info["config"] == dataclasses.asdict(DEMO_TRAIN_CONFIGS[name])
    # The loss went down a lot: last epoch under a quarter of the first.
    assert run.info["train_loss"][-1] < 0.25 * run.info["train_loss"][0]


def test_cache_hit_returns_identical_weights_without_training(demo_runs, demo_cache, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(train_mod, "train", _fake_train(calls))
    for name, first in demo_runs.items():
        run = load_demo_run(name, cache_dir=demo_cache)
        assert run.from_cache and run.path == first.path
        assert not run.model.training
        assert run.info == first.info
        loaded, reference = run.model.state_dict(), first.model.state_dict()
        assert loaded.keys() == reference.keys()
        assert all(torch.equal(loaded[k], reference[k]) for k in reference)
        model, splits = load_demo(name, cache_dir=demo_cache)
        assert torch.equal(model.state_dict()["fc.weight"], reference["fc.weight"])
        assert torch.equal(splits.test.tensors[0], first.splits.test.tensors[0])
    assert calls == []


def test_cache_folder_holds_only_finished_checkpoints(demo_runs, demo_cache):
    files = sorted(p.name for p in (Path(demo_cache) / "demo").iterdir())
    assert files == sorted(run.path.name for run in demo_runs.values())  # no temp files left


# ---- training determinism and evaluate ------------------------------------------------------


def _one_epoch(name: str, splits, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)  # same initial weights every time
    model = get_model(name)
    record = train(model, splits, epochs=1, lr=1e-2, seed=seed, batch_size=64)
    assert not model.training and record["n_steps"] == 17  # ceil(1079 / 64)
    return model.state_dict()


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_same_seed_gives_identical_weights_after_one_epoch(name, splits):
    first, second = _one_epoch(name, splits, 7), _one_epoch(name, splits, 7)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)  # BN running stats included


def test_other_seed_gives_other_weights(splits):
    first, other = _one_epoch("small_cnn", splits, 7), _one_epoch("small_cnn", splits, 8)
    assert not torch.equal(first["conv1.weight"], other["conv1.weight"])


def test_train_leaves_global_rng_and_thread_count_alone(splits):
    model = get_model("small_cnn")
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(model, splits, epochs=1, lr=1e-2, seed=0, batch_size=256)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


class _Oracle(nn.Module):
    """Predicts the true label for the first ``n_right`` images (by a tag in pixel 0), else 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tag = x[:, 0, 0, 0].long()  # tag = label + 1 for "right", 0 for "predict 0"
        logits = torch.zeros(len(x), 10)
        logits[torch.arange(len(x)), (tag - 1).clamp(min=0)] = 1.0
        return logits


def test_evaluate_counts_exactly():
    y = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 0, 0])
    x = torch.zeros(10, 1, 8, 8)
    x[:6, 0, 0, 0] = (y[:6] + 1).float()  # first 6 predicted right; rest predict 0
    # images 6..9 predict class 0: right for the two zeros (8, 9), wrong for 2 and 6.
    dataset = torch.utils.data.TensorDataset(x, y)
    model = _Oracle().train()
    assert evaluate(model, batches(dataset, 3)) == pytest.approx(8 / 10)
    assert model.training  # mode restored
    with pytest.raises(ConfigError, match="batches must be non-empty"):
        evaluate(model, [])


# ---- the cache: keys, location, corrupt files, retrain -------------------------------------


def test_cache_location_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("MPSEARCH_CACHE", raising=False)
    assert cache_root() == Path.home() / ".cache" / "mpsearch"
    monkeypatch.setenv("MPSEARCH_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    config = DEMO_TRAIN_CONFIGS["small_cnn"]
    assert checkpoint_path("small_cnn", config).parent == tmp_path / "env" / "demo"


def test_cache_key_changes_with_config_and_name(tmp_path):
    config = DEMO_TRAIN_CONFIGS["small_cnn"]
    base = checkpoint_path("small_cnn", config, tmp_path)
    assert base == checkpoint_path("small_cnn", config, tmp_path)  # stable
    assert base.name.startswith("small_cnn-") and base.suffix == ".pt"
    assert checkpoint_path("small_cnn", dataclasses.replace(config, epochs=config.epochs + 1), tmp_path) != base
    assert checkpoint_path("small_cnn", dataclasses.replace(config, lr=config.lr * 2), tmp_path) != base
    assert checkpoint_path("resnet_tiny", config, tmp_path).name.startswith("resnet_tiny-")


def test_cache_key_changes_with_torch_version(tmp_path, monkeypatch):
    config = DEMO_TRAIN_CONFIGS["small_cnn"]
    base = checkpoint_path("small_cnn", config, tmp_path)
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    assert checkpoint_path("small_cnn", config, tmp_path) != base


def test_corrupt_checkpoint_is_retrained_and_replaced(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(train_mod, "train", _fake_train(calls))
    path = checkpoint_path("small_cnn", DEMO_TRAIN_CONFIGS["small_cnn"], tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a file")
    with pytest.warns(UserWarning, match="demo checkpoint must be loadable"):
        run = load_demo_run("small_cnn", cache_dir=tmp_path)
    assert calls == ["SmallCNN"] and not run.from_cache
    again = load_demo_run("small_cnn", cache_dir=tmp_path)  # now a good file
    assert again.from_cache and calls == ["SmallCNN"]
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in run.model.state_dict().items())


def test_retrain_trains_even_with_a_cached_file(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(train_mod, "train", _fake_train(calls))
    load_demo("mobilenet_tiny", cache_dir=tmp_path)
    load_demo("mobilenet_tiny", cache_dir=tmp_path)
    load_demo("mobilenet_tiny", cache_dir=tmp_path, retrain=True)
    assert calls == ["MobileNetTiny", "MobileNetTiny"]


def test_unknown_demo_name_lists_valid_names(tmp_path):
    with pytest.raises(UnknownNameError, match="Valid: mobilenet_tiny, resnet_tiny, small_cnn"):
        load_demo("vgg16", cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing trained or written


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [("epochs", 0, "an integer >= 1"), ("lr", -1.0, "a finite number > 0"),
     ("batch_size", 2.5, "an integer >= 1"), ("image_size", 32, r"one of \[8, 16\]"),
     ("seed", -1, "an integer >= 0"), ("weight_decay", float("nan"), "a finite number >= 0")],
)
def test_train_config_is_checked(field, value, rule):
    with pytest.raises(ConfigError, match=rf"TrainConfig: {field} must be {rule}, but got"):
        TrainConfig(**{field: value})


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    """The checkpoint appears only by an atomic rename: a crash before it leaves nothing."""
    import mpsearch.core.io as core_io

    monkeypatch.setattr(train_mod, "train", _fake_train([]))

    def crash(src, dst):
        raise OSError("disk pulled out")

    monkeypatch.setattr(core_io.os, "replace", crash)
    from mpsearch.errors import ConfigError

    # a failed write is a ConfigError naming the file and the OS's reason (#18), never a raw OSError
    with pytest.raises(ConfigError, match=r"small_cnn-.*\.pt: must be a file path in a writable folder, "
                                          r"but writing failed: disk pulled out"):
        load_demo("small_cnn", cache_dir=tmp_path)
    assert list((tmp_path / "demo").iterdir()) == []  # neither the checkpoint nor a temp file
