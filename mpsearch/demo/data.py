"""The demo dataset: scikit-learn's bundled handwritten digits (1797 real 8x8 images, 10 classes).

The images ship inside scikit-learn, so nothing is downloaded. The split is fixed and
stratified: with fractions 60/20/20 rounded per class it has exactly 1079 train,
359 validation and 359 test images for any seed (see :data:`SPLIT_SIZES`; val and test
each hold 36 images of every class except 35 of classes 2 and 8 and 37 of class 3). Images are float32 tensors of shape ``(N, 1, H, W)``
normalized with the mean and standard deviation of the TRAIN images only (stored on the
returned :class:`DigitsSplits`), labels are int64.

scikit-learn is an optional dependency (``pip install 'mpsearch[demo]'``) and is imported
only when the data is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import TensorDataset

from mpsearch.errors import ConfigError, rule_error, unknown_name

#: Fraction of each class that goes to validation and to test; the rest is train.
VAL_FRACTION = 0.2
TEST_FRACTION = 0.2
#: Image sizes that :func:`load_digits_splits` can produce (16 = 2x nearest-neighbour upsample).
IMAGE_SIZES = (8, 16)
#: Exact sizes of the split (the same for every seed: the counts are rounded per class).
SPLIT_SIZES = {"train": 1079, "val": 359, "test": 359}
N_CLASSES = 10


@dataclass(frozen=True)
class DigitsSplits:
    """Train / validation / test splits of the digits dataset.

    Attributes:
        train: ``TensorDataset(x, y)`` with x float32 ``(N, 1, H, W)`` and y int64 ``(N,)``.
        val: same layout as ``train``.
        test: same layout as ``train``.
        mean: mean pixel value of the raw TRAIN images (raw pixels are 0..16).
        std: standard deviation of the raw TRAIN pixels; ``x = (raw - mean) / std``.
        seed: the seed that drew the split.
        image_size: H = W of the images (8, or 16 when upsampled).
    """

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    mean: float
    std: float
    seed: int
    image_size: int

    def split(self, name: str) -> TensorDataset:
        """Return the split called ``name`` ("train", "val" or "test")."""
        if name not in ("train", "val", "test"):
            raise unknown_name("split", name, ("train", "val", "test"))
        return getattr(self, name)

    def example_inputs(self, n: int = 1) -> tuple[torch.Tensor]:
        """The first ``n`` train images as a one-element tuple, ready for ``discover`` or fx."""
        return (self.train.tensors[0][:n],)


def _load_raw() -> tuple[np.ndarray, np.ndarray]:
    """Raw images ``(1797, 8, 8)`` float64 in 0..16 and labels ``(1797,)`` int64."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError(
            "the demo dataset needs scikit-learn, but it is not installed; "
            "run: pip install 'mpsearch[demo]'"
        ) from None
    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def stratified_indices(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Split sample indices per class into train/val/test (sorted index arrays).

    Each class c with n_c samples gives ``round(n_c * TEST_FRACTION)`` to test,
    ``round(n_c * VAL_FRACTION)`` to val and the rest to train, drawn by a permutation
    from ``numpy.random.default_rng(seed)`` (stable across platforms and numpy versions).
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * TEST_FRACTION))
        n_val = int(round(len(idx) * VAL_FRACTION))
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def load_digits_splits(seed: int = 0, image_size: int = 8) -> DigitsSplits:
    """Load the digits dataset as a fixed, seeded, stratified 60/20/20 split.

    Args:
        seed: seed of the split (which images go where; the sizes are :data:`SPLIT_SIZES`).
        image_size: 8 for the native images, or 16 for a 2x nearest-neighbour upsample
            (each pixel repeated 2x2; the normalization statistics are unchanged by it).

    Returns:
        The splits, normalized with the train mean and std.

    Raises:
        ConfigError: if ``image_size`` is not one of :data:`IMAGE_SIZES`, or
            scikit-learn is missing.
    """
    if isinstance(image_size, bool) or image_size not in IMAGE_SIZES:
        raise rule_error("load_digits_splits", "image_size", f"one of {list(IMAGE_SIZES)}", image_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise rule_error("load_digits_splits", "seed", "an integer", seed)
    images, labels = _load_raw()
    idx = stratified_indices(labels, int(seed))
    train_raw = images[idx["train"]]
    mean = float(train_raw.mean())
    std = float(train_raw.std())

    def make(name: str) -> TensorDataset:
        x = torch.from_numpy((images[idx[name]] - mean) / std).to(torch.float32).unsqueeze(1)
        if image_size != 8:
            factor = image_size // 8
            x = x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
        y = torch.from_numpy(labels[idx[name]].copy())
        return TensorDataset(x.contiguous(), y)

    return DigitsSplits(
        train=make("train"), val=make("val"), test=make("test"),
        mean=mean, std=std, seed=int(seed), image_size=int(image_size),
    )


class Batches:
    """A re-iterable sequence of ``(x, y)`` batches over a split.

    Iterating twice gives the same batches in the same order (the shuffle, if any, is
    drawn from ``torch.Generator().manual_seed(seed)`` afresh on each iteration), so a
    ``Batches`` can be handed to code that makes several passes (calibration, Hessian probes).
    """

    def __init__(self, split: TensorDataset, batch_size: int, shuffle: bool = False, seed: int = 0):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise rule_error("batches", "batch_size", "an integer >= 1", batch_size)
        self.x, self.y = split.tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)  # ceil: the last batch may be short

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        else:
            order = torch.arange(n)
        for start in range(0, n, self.batch_size):
            sel = order[start : start + self.batch_size]
            yield self.x[sel], self.y[sel]


def batches(split: TensorDataset, batch_size: int, shuffle: bool = False, seed: int = 0) -> Batches:
    """Batches ``(x, y)`` of a split: x float32 ``(B, 1, H, W)``, y int64 ``(B,)``.

    Args:
        split: one of the splits of :class:`DigitsSplits` (any TensorDataset of (x, y)).
        batch_size: images per batch; the last batch may be smaller.
        shuffle: draw a random order (same order on every pass for a given ``seed``).
        seed: seed of the shuffle.

    Returns:
        A re-iterable :class:`Batches` (``len()`` is the number of batches).
    """
    return Batches(split, batch_size, shuffle=shuffle, seed=seed)
