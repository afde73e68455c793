"""``load_demo_run(name, seed=s)``: another trained model on another split, cached apart; None is the demo (#21)."""

from __future__ import annotations

import numpy as np
import torch

from mpsearch.demo import batches, load_demo_run
from mpsearch.demo.data import _load_raw, load_digits_splits, stratified_indices
from mpsearch.demo.train import DEMO_TRAIN_CONFIGS, checkpoint_path, evaluate


def test_a_seed_trains_another_model_on_another_split(tmp_path):
    run = load_demo_run("small_cnn", cache_dir=tmp_path, seed=3)
    assert run.info["config"]["seed"] == 3 and run.info["config"]["split_seed"] == 3
    assert run.splits.seed == 3 and run.path != checkpoint_path("small_cnn", DEMO_TRAIN_CONFIGS["small_cnn"], tmp_path)
    # the split is the one seed 3 draws, not the demo's (seed 0): same sizes, other images
    _, labels = _load_raw()
    idx3, idx0 = stratified_indices(labels, 3), stratified_indices(labels, 0)
    assert len(idx3["test"]) == len(idx0["test"]) == 359 and not np.array_equal(idx3["test"], idx0["test"])
    assert torch.equal(run.splits.test.tensors[1], torch.from_numpy(labels[idx3["test"]]))
    # the recorded accuracy is the model's on its own test split, and a second call loads the cache
    assert evaluate(run.model, batches(run.splits.test, 512)) == run.info["test_accuracy"]
    again = load_demo_run("small_cnn", cache_dir=tmp_path, seed=3)
    assert again.from_cache and all(torch.equal(a, b) for a, b in
                                    zip(again.model.state_dict().values(), run.model.state_dict().values()))
    assert load_digits_splits(seed=3).test.tensors[0].shape == (359, 1, 8, 8)
