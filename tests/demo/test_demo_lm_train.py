"""Training, evaluation and the checkpoint cache of the demo language model."""

from __future__ import annotations

import dataclasses
import importlib
import math

import pytest
import torch

from mpsearch.demo import (
    DEMO_LM_MODELS,
    DEMO_LM_TRAIN_CONFIGS,
    GPT,
    GPTConfig,
    LMTrainConfig,
    bits_per_byte,
    cache_root,
    lm_checkpoint_path,
    load_demo,
    load_demo_lm,
    load_demo_lm_run,
    load_text_splits,
    text_batches,
    train_lm,
)
from mpsearch.errors import ConfigError, UnknownNameError

lm_train_mod = importlib.import_module("mpsearch.demo.lm_train")
TINY = GPTConfig(context=32, d_model=32, n_layers=1, n_heads=2, mlp_hidden=64)
SHORT = LMTrainConfig(steps=40, lr=1e-2, batch_size=16, warmup_steps=5, seed=7)


@pytest.fixture(scope="module")
def splits():
    return load_text_splits()


def _short_run(splits, config: LMTrainConfig = SHORT, model_config: GPTConfig = TINY):
    torch.manual_seed(0)  # same initial weights every time
    model = GPT(model_config)
    record = train_lm(model, splits, config, log_every=10, evaluate=False)
    return model, record


def _fake_train(calls: list[str]):
    """A stand-in for ``train_lm`` that records the call and leaves the weights as they are."""

    def fake(model, splits, config, **kwargs):
        calls.append(type(model).__name__)
        model.eval()
        return {"train_loss": [0.0], "val_bits_per_byte": 8.0, "test_bits_per_byte": 8.0,
                "train_time_s": 0.0, "train_cpu_s": 0.0, "n_steps": 0}

    return fake


# ---- a short training run ---------------------------------------------------------------------


def test_short_run_lowers_the_loss_and_is_deterministic(splits):
    model, record = _short_run(splits)
    assert record["n_steps"] == 40 and len(record["train_loss"]) == 4 and not model.training
    # Starts near ln(256) = 5.55 nats (uniform); 40 steps learn at least the byte frequencies.
    assert record["train_loss"][0] > 4.0 and record["train_loss"][-1] < 3.6
    assert record["train_loss"] == sorted(record["train_loss"], reverse=True)
    assert bits_per_byte(model, text_batches(splits.val[:20_001], 32, 64)) < 5.5  # 8 bits at random
    again, record_again = _short_run(splits)
    assert record_again["train_loss"] == record["train_loss"]
    first, second = model.state_dict(), again.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert again.head.weight is again.tok_emb.weight  # training keeps the tie


def test_other_seed_gives_other_weights(splits):
    config = dataclasses.replace(SHORT, steps=3)
    first, _ = _short_run(splits, config)
    other, _ = _short_run(splits, dataclasses.replace(config, seed=8))
    assert not torch.equal(first.tok_emb.weight, other.tok_emb.weight)


def test_training_leaves_global_rng_and_thread_count_alone(splits):
    threads = torch.get_num_threads()
    model = GPT(TINY)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_lm(model, splits, dataclasses.replace(SHORT, steps=2), evaluate=False)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_learning_rate_warms_up_then_decays_to_zero():
    config = LMTrainConfig(steps=110, lr=2e-3, warmup_steps=10)
    lr_at = lm_train_mod._lr_at
    assert [lr_at(s, config) for s in (0, 4, 9)] == pytest.approx([2e-4, 1e-3, 2e-3], rel=1e-12)
    assert lr_at(10, config) == pytest.approx(2e-3, rel=1e-12)  # cosine starts at the peak
    assert lr_at(60, config) == pytest.approx(1e-3, rel=1e-12)  # halfway down
    assert lr_at(110, config) == pytest.approx(0.0, abs=1e-18)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [("steps", 0, "an integer >= 1"), ("warmup_steps", -1, "an integer >= 0"),
     ("lr", 0.0, "a finite number > 0"), ("weight_decay", math.inf, "a finite number >= 0"),
     ("grad_clip", -1.0, "a finite number > 0"), ("n_threads", 0, "an integer >= 1"),
     ("batch_size", True, "an integer >= 1")],
)
def test_train_config_is_checked(field, value, rule):
    with pytest.raises(ConfigError, match=rf"LMTrainConfig: {field} must be {rule}, but got"):
        LMTrainConfig(**{field: value})


# ---- the cache -----------------------------------------------------------------------------------


def test_cache_hit_returns_identical_weights_without_training(tmp_path, monkeypatch, splits):
    calls: list[str] = []
    monkeypatch.setattr(lm_train_mod, "train_lm", _fake_train(calls))
    first = load_demo_lm_run("gpt_tiny", cache_dir=tmp_path, splits=splits)
    assert calls == ["GPT"] and not first.from_cache
    assert first.path.parent == tmp_path / "demo" and first.path.name.startswith("gpt_tiny-")
    assert first.info["n_params"] == sum(p.numel() for p in first.model.parameters())
    assert first.info["text_sha256"] == splits.sha256
    again = load_demo_lm_run("gpt_tiny", cache_dir=tmp_path)
    assert again.from_cache and calls == ["GPT"] and again.info == first.info
    assert again.model.head.weight is again.model.tok_emb.weight  # the tie survives loading
    loaded, reference = again.model.state_dict(), first.model.state_dict()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    model, text = load_demo_lm(cache_dir=tmp_path)
    assert not model.training and text.sha256 == splits.sha256
    load_demo_lm("gpt_tiny", cache_dir=tmp_path, retrain=True)
    assert calls == ["GPT", "GPT"]
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [first.path.name]  # no temp files


def test_corrupt_checkpoint_is_retrained_and_replaced(tmp_path, monkeypatch, splits):
    calls: list[str] = []
    monkeypatch.setattr(lm_train_mod, "train_lm", _fake_train(calls))
    path = lm_checkpoint_path("gpt_tiny", DEMO_LM_TRAIN_CONFIGS["gpt_tiny"], splits, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a file")
    with pytest.warns(UserWarning, match="demo checkpoint must be loadable"):
        run = load_demo_lm_run("gpt_tiny", cache_dir=tmp_path, splits=splits)
    assert calls == ["GPT"] and not run.from_cache
    assert load_demo_lm_run("gpt_tiny", cache_dir=tmp_path, splits=splits).from_cache


def test_cache_key_follows_config_text_and_torch(tmp_path, monkeypatch, splits):
    config = DEMO_LM_TRAIN_CONFIGS["gpt_tiny"]
    base = lm_checkpoint_path("gpt_tiny", config, splits, tmp_path)
    assert base == lm_checkpoint_path("gpt_tiny", config, splits, tmp_path)  # stable
    assert base.suffix == ".pt" and base.parent == cache_root(tmp_path) / "demo"
    assert lm_checkpoint_path("gpt_tiny", dataclasses.replace(config, steps=config.steps + 1), splits, tmp_path) != base
    assert lm_checkpoint_path("gpt_tiny", dataclasses.replace(config, n_threads=2), splits, tmp_path) != base
    other_text = dataclasses.replace(splits, sha256="0" * 64)
    assert lm_checkpoint_path("gpt_tiny", config, other_text, tmp_path) != base
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    assert lm_checkpoint_path("gpt_tiny", config, splits, tmp_path) != base


def test_unknown_names_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown demo language model 'resnet_tiny'.*Valid: gpt_micro, gpt_tiny"):
        load_demo_lm("resnet_tiny", cache_dir=tmp_path)
    with pytest.raises(UnknownNameError, match=r"it is a language model, load it with load_demo_lm\('gpt_tiny'\)"):
        load_demo("gpt_tiny", cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())


# ---- the trained model (only when cached: training takes minutes) -------------------------------


def test_cached_gpt_tiny_beats_a_unigram_model_by_far(cached_lm_run):
    run = cached_lm_run
    context = DEMO_LM_MODELS["gpt_tiny"].context
    test_bpb = bits_per_byte(run.model, text_batches(run.splits.test, context, 64))
    assert test_bpb == pytest.approx(run.info["test_bits_per_byte"], abs=1e-9)
    # A unigram model of this text scores ~4.5 bits per byte on test; the trained LM ~2.2.
    assert test_bpb < 2.5
    assert run.info["val_bits_per_byte"] < 2.7
    assert run.model.head.weight is run.model.tok_emb.weight and not run.model.training
