"""Byte-level text from Python's own standard library, for the language-model demo.

The text is the source of a fixed list of standard-library modules (code, comments and
docstrings), read as raw bytes (vocabulary 256) from the folder ``sysconfig.get_paths()["stdlib"]``
of the running Python. Nothing is downloaded. The split is by file and fixed
(:data:`TEXT_FILES`): no file contributes to two splits. Each split is the concatenation of its
files' bytes in list order, so the exact bytes (and so the trained model and its numbers)
follow the Python version; :attr:`TextSplits.sha256` identifies them.

Every listed file exists as a plain module in CPython 3.11 to 3.14; modules removed in 3.12 or
3.13 (``asyncore``, ``cgi``, ...) and modules that later became packages (``pathlib``,
``zipfile``, ``string``, ``sysconfig``) are left out. Sizes on 3.11: about 2.1 MB train,
0.19 MB validation, 0.21 MB test.

    splits = load_text_splits()
    for x, y in text_batches(splits.val, context=128, batch_size=64):  # x, y int64 (B, 128)
        ...                                                               # y[:, t] == x[:, t + 1]
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from mpsearch.errors import ConfigError, rule_error, unknown_name

#: Number of distinct tokens: one per byte value.
VOCAB_SIZE = 256

#: Standard-library files (relative to the stdlib folder) of each split.
TEXT_FILES: dict[str, tuple[str, ...]] = {
    "train": (
        "argparse.py", "difflib.py", "enum.py", "logging/__init__.py", "subprocess.py",
        "inspect.py", "dataclasses.py", "functools.py", "contextlib.py", "collections/__init__.py",
        "threading.py", "shutil.py", "tempfile.py", "configparser.py", "unittest/case.py",
        "ast.py", "traceback.py", "os.py", "posixpath.py", "random.py",
        "statistics.py", "tokenize.py", "pprint.py", "http/client.py", "urllib/parse.py",
        "email/message.py", "email/feedparser.py", "xml/dom/minidom.py", "asyncio/tasks.py",
        "asyncio/locks.py", "concurrent/futures/_base.py", "selectors.py", "socket.py",
        "codecs.py", "base64.py", "gettext.py", "weakref.py", "tomllib/_parser.py",
        "ipaddress.py", "optparse.py", "tarfile.py", "typing.py",
    ),
    "val": (
        "json/decoder.py", "json/encoder.py", "textwrap.py", "shlex.py", "heapq.py", "csv.py",
        "glob.py", "copy.py", "queue.py", "html/parser.py", "http/cookies.py", "asyncio/queues.py",
        "calendar.py",
    ),
    "test": (
        "fractions.py", "graphlib.py", "sched.py", "fnmatch.py", "getopt.py", "timeit.py",
        "cmd.py", "fileinput.py", "gzip.py", "plistlib.py", "uuid.py", "mimetypes.py",
    ),
}
SPLIT_NAMES = ("train", "val", "test")


def stdlib_dir() -> Path:
    """The folder of the running Python's standard library source (``sysconfig``'s "stdlib")."""
    return Path(sysconfig.get_paths()["stdlib"])


@dataclass(frozen=True)
class TextSplits:
    """Train / validation / test byte streams of the standard-library text.

    Attributes:
        train: uint8 tensor ``(n_bytes,)``, the train files' bytes concatenated in list order.
        val: same layout as ``train``.
        test: same layout as ``train``.
        files: split name -> the files it was read from (paths relative to ``stdlib``).
        stdlib: the folder the files were read from.
        sha256: hex digest of the three streams (train, val, test, each length-prefixed).
    """

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    files: dict[str, tuple[str, ...]]
    stdlib: Path
    sha256: str

    def split(self, name: str) -> torch.Tensor:
        """Return the byte stream called ``name`` ("train", "val" or "test")."""
        if name not in SPLIT_NAMES:
            raise unknown_name("split", name, SPLIT_NAMES)
        return getattr(self, name)

    def example_inputs(self, n: int = 1, context: int = 128) -> tuple[torch.Tensor]:
        """The first ``n`` train windows ``(n, context)`` int64 as a one-element tuple (for ``discover`` or fx)."""
        return (windows(self.train, context)[0][:n],)


def _read_split(root: Path, names: tuple[str, ...]) -> bytes:
    parts = []
    for name in names:
        path = root / name
        if not path.is_file():
            raise ConfigError(
                f"load_text_splits: the standard-library file {name!r} must exist in {str(root)!r}, "
                "but it is missing (the LM demo reads its text from the Python installation's "
                "own .py sources; an install that ships only .pyc files cannot run it)"
            )
        parts.append(path.read_bytes())
    return b"".join(parts)


def load_text_splits(stdlib: str | Path | None = None) -> TextSplits:
    """Read the fixed standard-library files of :data:`TEXT_FILES` as byte streams.

    Args:
        stdlib: the folder to read from; default :func:`stdlib_dir` (the running Python's).

    Returns:
        The three splits as uint8 tensors, with their files and a digest of their bytes.

    Raises:
        ConfigError: a listed file is missing (the message names the file and the folder).
    """
    root = stdlib_dir() if stdlib is None else Path(stdlib)
    streams = {name: _read_split(root, TEXT_FILES[name]) for name in SPLIT_NAMES}
    digest = hashlib.sha256()
    for name in SPLIT_NAMES:
        digest.update(len(streams[name]).to_bytes(8, "little"))
        digest.update(streams[name])
    # bytearray: torch.frombuffer needs a writable buffer to avoid a warning.
    tensors = {name: torch.frombuffer(bytearray(data), dtype=torch.uint8).clone() for name, data in streams.items()}
    return TextSplits(
        train=tensors["train"], val=tensors["val"], test=tensors["test"],
        files={name: TEXT_FILES[name] for name in SPLIT_NAMES}, stdlib=root, sha256=digest.hexdigest(),
    )


def _check_positive(where: str, key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise rule_error(where, key, "an integer >= 1", value)


def _check_stream(where: str, stream: torch.Tensor, context: int) -> None:
    if not isinstance(stream, torch.Tensor) or stream.dim() != 1:
        raise rule_error(where, "stream", "a 1-D tensor of byte values", stream)
    if len(stream) < context + 1:
        raise rule_error(where, "stream", f"at least context + 1 = {context + 1} bytes long", len(stream))


def windows(stream: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All non-overlapping windows of ``stream`` with next-byte targets.

    Window i is ``x[i] = stream[i*context : (i+1)*context]`` and ``y[i] = stream[i*context + 1 :
    (i+1)*context + 1]``, for ``i < (len(stream) - 1) // context``; every byte after the first is
    a target at most once, and the tail that does not fill a window is left out.

    Returns:
        ``(x, y)``, both int64 ``(n_windows, context)``.
    """
    _check_positive("windows", "context", context)
    _check_stream("windows", stream, context)
    n = (len(stream) - 1) // context
    x = stream[: n * context].view(n, context)
    y = stream[1 : n * context + 1].view(n, context)
    return x.long(), y.long()


class TextBatches:
    """A re-iterable sequence of ``(x, y)`` batches of byte windows, int64 ``(B, context)``.

    Deterministic mode (``n_batches=None``): the non-overlapping windows of :func:`windows`, in
    stream order, ``batch_size`` per batch (the last may be smaller). Random mode: ``n_batches``
    batches of ``batch_size`` windows starting at offsets drawn uniformly from
    ``torch.Generator().manual_seed(seed)``, drawn afresh on each pass, so every pass gives
    the same batches (as calibration and Hessian probes need).
    """

    def __init__(self, stream: torch.Tensor, context: int, batch_size: int,
                 n_batches: int | None = None, seed: int = 0):
        where = "text_batches"
        _check_positive(where, "context", context)
        _check_positive(where, "batch_size", batch_size)
        if n_batches is not None:
            _check_positive(where, "n_batches", n_batches)
        _check_stream(where, stream, context)
        self.stream = stream
        self.context = context
        self.batch_size = batch_size
        self.n_batches = n_batches
        self.seed = seed

    def __len__(self) -> int:
        if self.n_batches is not None:
            return self.n_batches
        n_windows = (len(self.stream) - 1) // self.context
        return -(-n_windows // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.n_batches is None:
            x, y = windows(self.stream, self.context)
            for start in range(0, len(x), self.batch_size):
                yield x[start : start + self.batch_size], y[start : start + self.batch_size]
            return
        generator = torch.Generator().manual_seed(self.seed)
        n_starts = len(self.stream) - self.context  # a start s needs stream[s : s + context + 1]
        span = torch.arange(self.context + 1)
        for _ in range(self.n_batches):
            starts = torch.randint(0, n_starts, (self.batch_size,), generator=generator)
            chunk = self.stream[starts[:, None] + span].long()  # (B, context + 1)
            yield chunk[:, :-1], chunk[:, 1:]


def text_batches(stream: torch.Tensor, context: int, batch_size: int,
                 n_batches: int | None = None, seed: int = 0) -> TextBatches:
    """Batches ``(x, y)`` of byte windows with next-byte targets (``y[:, t] == x[:, t + 1]``).

    Args:
        stream: a 1-D byte stream, e.g. ``splits.val``.
        context: window length in bytes (the model's context).
        batch_size: windows per batch.
        n_batches: None for the deterministic, non-overlapping windows (evaluation); a count
            for that many batches of randomly placed windows (training).
        seed: seed of the random windows (unused when ``n_batches`` is None).

    Returns:
        A re-iterable :class:`TextBatches` (``len()`` is the number of batches).
    """
    return TextBatches(stream, context, batch_size, n_batches=n_batches, seed=seed)
