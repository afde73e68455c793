"""The digits split: exact sizes, disjointness, stratification, train-only normalization."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from mpsearch.demo import SPLIT_SIZES, batches, load_digits_splits
from mpsearch.demo.data import stratified_indices
from mpsearch.errors import ConfigError, UnknownNameError

# Class sizes of sklearn's digits, and round(0.2 * n_c) per class (Python rounds half to even;
# no class hits a .5): 178->36, 182->36, 177->35, 183->37, 181->36, 182->36, 181->36, 179->36,
# 174->35, 180->36.
CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
HELD_OUT_PER_CLASS = [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
TRAIN_PER_CLASS = [n - 2 * h for n, h in zip(CLASS_COUNTS, HELD_OUT_PER_CLASS)]


@pytest.fixture(scope="module")
def raw() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    return bunch.images.astype(np.float64), bunch.target.astype(np.int64)


@pytest.fixture(scope="module")
def splits():
    return load_digits_splits(seed=0)


def test_class_counts_of_the_dataset_are_as_assumed(raw):
    assert np.bincount(raw[1]).tolist() == CLASS_COUNTS


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_split_sizes_exact_disjoint_and_complete(seed, raw):
    idx = stratified_indices(raw[1], seed)
    assert {k: len(v) for k, v in idx.items()} == {"train": 1079, "val": 359, "test": 359} == SPLIT_SIZES
    all_idx = np.concatenate([idx["train"], idx["val"], idx["test"]])
    assert len(np.unique(all_idx)) == 1797  # disjoint and covering every image
    assert sorted(all_idx.tolist()) == list(range(1797))


def test_split_is_stratified(splits):
    assert torch.bincount(splits.train.tensors[1], minlength=10).tolist() == TRAIN_PER_CLASS
    assert torch.bincount(splits.val.tensors[1], minlength=10).tolist() == HELD_OUT_PER_CLASS
    assert torch.bincount(splits.test.tensors[1], minlength=10).tolist() == HELD_OUT_PER_CLASS


def test_split_is_seeded(raw):
    a, b, c = (stratified_indices(raw[1], s) for s in (0, 0, 1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_shapes_and_dtypes(splits):
    for name, n in SPLIT_SIZES.items():
        x, y = splits.split(name).tensors
        assert x.shape == (n, 1, 8, 8) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64
    assert splits.example_inputs(3)[0].shape == (3, 1, 8, 8)


def test_normalization_uses_train_statistics_only(splits, raw):
    images, labels = raw
    idx = stratified_indices(labels, 0)
    train_raw = images[idx["train"]]
    assert splits.mean == pytest.approx(train_raw.mean(), abs=1e-12)
    assert splits.std == pytest.approx(train_raw.std(), abs=1e-12)
    # The statistics of all images differ, so this would catch leakage of val/test.
    assert abs(images.mean() - train_raw.mean()) > 1e-4
    # Train images are standardized; held-out images are the raw pixels mapped the same way.
    x_train = splits.train.tensors[0].double()
    assert x_train.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert x_train.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)
    test_raw = splits.test.tensors[0].double().squeeze(1) * splits.std + splits.mean
    assert torch.allclose(test_raw, torch.from_numpy(images[idx["test"]]), atol=1e-5)
    assert torch.equal(splits.test.tensors[1], torch.from_numpy(labels[idx["test"]]))


def test_upsample_to_16_repeats_each_pixel(splits):
    big = load_digits_splits(seed=0, image_size=16)
    x8, x16 = splits.train.tensors[0], big.train.tensors[0]
    assert x16.shape == (1079, 1, 16, 16)
    for dy in (0, 1):
        for dx in (0, 1):
            assert torch.equal(x16[..., dy::2, dx::2], x8)
    assert big.mean == splits.mean and big.std == splits.std


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match=r"image_size must be one of \[8, 16\], but got 12"):
        load_digits_splits(image_size=12)
    with pytest.raises(ConfigError, match="seed must be an integer"):
        load_digits_splits(seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1, but got 0"):
        batches(load_digits_splits().val, 0)


def test_unknown_split_name_lists_valid(splits):
    with pytest.raises(UnknownNameError, match="Valid: test, train, val"):
        splits.split("validation")


def test_missing_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ConfigError, match=r"pip install 'mpsearch\[demo\]'"):
        load_digits_splits()


def test_batches_cover_split_in_order_and_shuffle_is_seeded(splits):
    x, y = splits.val.tensors
    plain = batches(splits.val, 100)
    assert len(plain) == 4  # 359 = 3 * 100 + 59
    sizes = [len(yb) for _, yb in plain]
    assert sizes == [100, 100, 100, 59]
    assert torch.equal(torch.cat([xb for xb, _ in plain]), x)

    shuffled = batches(splits.val, 100, shuffle=True, seed=3)
    first = torch.cat([yb for _, yb in shuffled])
    second = torch.cat([yb for _, yb in shuffled])  # re-iterable: same order again
    assert torch.equal(first, second)
    assert not torch.equal(first, y)
    assert sorted(first.tolist()) == sorted(y.tolist())  # a permutation of the split
    other = torch.cat([yb for _, yb in batches(splits.val, 100, shuffle=True, seed=4)])
    assert not torch.equal(first, other)
