"""The LM demo's text: fixed standard-library files split by file, byte windows and batches."""

from __future__ import annotations

import hashlib

import pytest
import torch

from mpsearch.demo import TEXT_FILES, load_text_splits, text_batches, windows
from mpsearch.demo.text import stdlib_dir
from mpsearch.errors import ConfigError, UnknownNameError


@pytest.fixture(scope="module")
def splits():
    return load_text_splits()


def test_split_is_by_file_disjoint_and_fixed():
    names = [name for files in TEXT_FILES.values() for name in files]
    assert len(names) == len(set(names)) == 67  # no file in two splits, none twice
    assert [len(TEXT_FILES[k]) for k in ("train", "val", "test")] == [42, 13, 12]
    assert TEXT_FILES["val"][0] == "json/decoder.py" and TEXT_FILES["test"][0] == "fractions.py"


def test_each_split_is_its_files_bytes_concatenated_in_order(splits):
    root = stdlib_dir()
    digest = hashlib.sha256()
    for name in ("train", "val", "test"):
        expected = b"".join((root / f).read_bytes() for f in TEXT_FILES[name])
        stream = splits.split(name)
        assert stream.dtype == torch.uint8 and stream.dim() == 1
        assert bytes(stream.tolist()) == expected
        assert splits.files[name] == TEXT_FILES[name]
        digest.update(len(expected).to_bytes(8, "little"))
        digest.update(expected)
    assert splits.sha256 == digest.hexdigest()
    assert splits.stdlib == root
    # Sizes in bytes: modest, with train the bulk (exact counts follow the Python version).
    assert 1_500_000 < len(splits.train) < 3_000_000
    assert 150_000 < len(splits.val) < 400_000 and 150_000 < len(splits.test) < 400_000


def test_loading_twice_gives_identical_streams(splits):
    again = load_text_splits()
    assert again.sha256 == splits.sha256
    assert all(torch.equal(again.split(k), splits.split(k)) for k in ("train", "val", "test"))


def test_missing_file_names_the_file_and_the_folder(tmp_path):
    (tmp_path / "argparse.py").write_text("x = 1\n")  # the first train file exists; the second does not
    with pytest.raises(ConfigError, match=r"load_text_splits: the standard-library file 'difflib.py' must exist in") as info:
        load_text_splits(tmp_path)
    assert repr(str(tmp_path)) in str(info.value)


def test_unknown_split_lists_the_valid_ones(splits):
    with pytest.raises(UnknownNameError, match="Valid: test, train, val"):
        splits.split("validation")


def test_windows_are_non_overlapping_with_targets_shifted_by_one():
    x, y = windows(torch.arange(11), 3)  # 10 targets -> 3 full windows; the tail (byte 10's target) is left out
    assert torch.equal(x, torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]]))
    assert torch.equal(y, torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]]))
    assert x.dtype == y.dtype == torch.int64
    assert windows(torch.arange(10), 3)[0].shape == (3, 3)  # 9 targets fill exactly 3 windows
    assert windows(torch.arange(9), 3)[0].shape == (2, 3)


def test_windows_of_the_real_text(splits):
    x, y = windows(splits.val, 128)
    n = (len(splits.val) - 1) // 128
    assert x.shape == y.shape == (n, 128)
    assert torch.equal(x.reshape(-1), splits.val[: n * 128].long())
    assert torch.equal(y.reshape(-1), splits.val[1 : n * 128 + 1].long())
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_evaluation_batches_cover_the_windows_in_order(splits):
    data = text_batches(splits.test, 64, 100)
    x_all, y_all = windows(splits.test, 64)
    got = list(data)
    assert len(data) == len(got) == -(-len(x_all) // 100)
    assert all(len(x) == 100 for x, _ in got[:-1]) and len(got[-1][0]) == len(x_all) - 100 * (len(got) - 1)
    assert torch.equal(torch.cat([x for x, _ in got]), x_all)
    assert torch.equal(torch.cat([y for _, y in got]), y_all)


def test_training_batches_are_seeded_contiguous_windows():
    stream = torch.arange(500)
    data = text_batches(stream, 16, 8, n_batches=5, seed=3)
    first, second = list(data), list(data)  # re-iterable: the same batches on every pass
    assert len(data) == len(first) == 5
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert x1.shape == y1.shape == (8, 16) and x1.dtype == torch.int64
        assert torch.equal(y1, x1 + 1)  # next-byte targets of an arange
        assert torch.equal(x1[:, 1:] - x1[:, :-1], torch.ones(8, 15, dtype=torch.int64))  # contiguous
        assert int(x1.min()) >= 0 and int(y1.max()) <= 499
    same_seed = list(text_batches(stream, 16, 8, n_batches=5, seed=3))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, same_seed, strict=True))
    other_seed = list(text_batches(stream, 16, 8, n_batches=5, seed=4))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other_seed, strict=True))


def test_training_windows_reach_both_ends_of_the_stream():
    stream = torch.arange(20)  # context 4: starts 0..15, the last window's target is byte 19
    starts = torch.cat([x[:, 0] for x, _ in text_batches(stream, 4, 64, n_batches=10, seed=0)])
    assert set(starts.tolist()) == set(range(16))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"context": 0}, "text_batches: context must be an integer >= 1, but got 0"),
     ({"batch_size": 2.0}, "text_batches: batch_size must be an integer >= 1, but got 2.0"),
     ({"n_batches": 0}, "text_batches: n_batches must be an integer >= 1, but got 0"),
     ({"context": 10}, "text_batches: stream must be at least context \\+ 1 = 11 bytes long, but got 10")],
)
def test_bad_batch_arguments_are_refused(kwargs, message):
    args = {"stream": torch.arange(10), "context": 4, "batch_size": 2, **kwargs}
    with pytest.raises(ConfigError, match=message):
        text_batches(**args)


def test_example_inputs_are_the_first_train_windows(splits):
    (x,) = splits.example_inputs(2, context=32)
    assert x.shape == (2, 32) and x.dtype == torch.int64
    assert torch.equal(x.reshape(-1), splits.train[:64].long())
