"""On-disk cache of sensitivity results, so a rerun or a resumed search does not measure again.

Sensitivity is the slow step of a run (Hessian probes: seconds on the demo, hours on an LLM),
and its result depends only on what goes in. A result is stored as one JSON file named by a
key that covers every input:

* the model: its structure (``repr``), the plain attributes of its modules, and every tensor
  of its ``state_dict`` (name, dtype, shape and bytes), so one changed weight or BatchNorm
  statistic is a different key;
* the data: every tensor (and plain value) of every batch, in order;
* the loss function: its type, ``repr``, plain attributes and tensors, or a function's name,
  code and captured values;
* the method and every field of its config that takes part in comparison (the progress
  callback does not), and the layers asked for;
* the versions of mpsearch and torch (a new release may measure differently), and this
  file's :data:`FORMAT`.

So a changed input is never served stale: it is simply another key. Files are written
atomically (:func:`mpsearch.core.io.write_text_atomic`), so a run killed while storing leaves
either the whole file or none; an unreadable file is measured again and overwritten.

Used by :func:`mpsearch.analyze` with ``cache_dir=`` (opt-in), and by the recipe pipeline
with :func:`default_cache_dir` (``<cache root>/sensitivity``: ``$MPSEARCH_CACHE/sensitivity``,
else ``~/.cache/mpsearch/sensitivity``, next to the demo checkpoints and numba's kernels).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from mpsearch.core.io import write_text_atomic
from mpsearch.core.types import Layer, Sensitivity

log = logging.getLogger("mpsearch")

#: Bumped when the stored layout or the key's recipe changes; part of every key.
FORMAT = 1


def default_cache_dir() -> Path:
    """``<cache root>/sensitivity``, the folder the recipe pipeline caches sensitivity in."""
    from mpsearch.demo.train import cache_root  # the one definition of the cache root

    return cache_root() / "sensitivity"


class _Hasher:
    """A running BLAKE2b digest of typed values (type tags keep ``1`` and ``"1"`` apart)."""

    def __init__(self) -> None:
        self.h = hashlib.blake2b(digest_size=20)

    def text(self, tag: str, s: str) -> None:
        b = s.encode()
        self.h.update(f"{tag}:{len(b)}:".encode())
        self.h.update(b)

    def tensor(self, t: torch.Tensor) -> None:
        t = t.detach().to("cpu").contiguous()
        self.text("tensor", f"{t.dtype}{tuple(t.shape)}")
        flat = t.reshape(-1)
        if flat.numel():
            self.h.update(flat.view(torch.uint8).numpy().tobytes() if flat.dtype != torch.bool
                          else flat.to(torch.uint8).numpy().tobytes())

    def value(self, v: Any) -> None:
        """Tensors by their bytes, containers item by item, anything else by ``repr``."""
        if isinstance(v, torch.Tensor):
            self.tensor(v)
        elif isinstance(v, Mapping):
            self.text("map", str(len(v)))
            for k, x in v.items():
                self.value(k)
                self.value(x)
        elif isinstance(v, (list, tuple)):
            self.text(type(v).__name__, str(len(v)))
            for x in v:
                self.value(x)
        elif hasattr(v, "__array__") and not isinstance(v, (str, bytes)):
            self.tensor(torch.as_tensor(v))
        else:
            # a repr that holds a memory address changes every run: a miss, never a stale hit
            self.text(type(v).__qualname__, repr(v))

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def _config_fields(config: Any) -> dict[str, str]:
    """The fields of a method config that take part in comparison (not the progress callback)."""
    if dataclasses.is_dataclass(config):
        return {f.name: repr(getattr(config, f.name)) for f in dataclasses.fields(config) if f.compare}
    return {"repr": repr(config)}


_PLAIN = (bool, int, float, str, type(None))


def _hash_settings(h: _Hasher, module: torch.nn.Module) -> None:
    """Plain attributes of every submodule (``label_smoothing``, ``eps``, a forward's scale...),
    which neither ``repr`` nor ``state_dict`` always shows."""
    for name, m in module.named_modules():
        for k, v in sorted(vars(m).items()):
            if k.startswith("_"):
                continue
            if isinstance(v, _PLAIN) or (isinstance(v, (tuple, list)) and all(isinstance(x, _PLAIN) for x in v)):
                h.text("attr", f"{name}.{k}")
                h.value(v)


def _hash_loss(h: _Hasher, loss_fn: Any) -> None:
    h.text("loss", f"{type(loss_fn).__module__}.{type(loss_fn).__qualname__}")
    if isinstance(loss_fn, torch.nn.Module):
        h.text("loss_repr", repr(loss_fn))
        _hash_settings(h, loss_fn)
        h.value(dict(loss_fn.state_dict()))
        return
    fn = getattr(loss_fn, "__func__", loss_fn)
    code = getattr(fn, "__code__", None)
    h.text("loss_name", f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}")
    if code is not None:  # a changed function body is a different key
        h.h.update(code.co_code)
        h.text("loss_consts", repr(code.co_consts))
        for cell in getattr(fn, "__closure__", None) or ():  # values a lambda or closure captured
            h.value(cell.cell_contents)


def cache_key(model: torch.nn.Module, loss_fn: Any, batches: Sequence[Any], method: str, config: Any,
              layers: Sequence[Layer | str] | None = None) -> str:
    """The key of one ``analyze`` call: a hex digest over every input (see the module docstring).

    Args:
        model: the model as the caller passed it.
        loss_fn: the loss function.
        batches: the batches, already a list (they are read, not consumed).
        method: the sensitivity method name.
        config: the method's config.
        layers: layers asked for (``Layer`` values or names), or None for all.
    """
    import mpsearch

    h = _Hasher()
    h.text("format", str(FORMAT))
    h.text("versions", f"mpsearch {mpsearch.__version__} torch {torch.__version__}")
    h.text("method", method)
    h.value(_config_fields(config))
    h.value(None if layers is None else [lay.name if isinstance(lay, Layer) else str(lay) for lay in layers])
    h.text("model", repr(model))
    _hash_settings(h, model)
    for name, t in model.state_dict(keep_vars=False).items():
        h.text("param", name)
        h.tensor(t)
    _hash_loss(h, loss_fn)
    h.text("batches", str(len(batches)))
    for b in batches:
        h.value(b)
    return h.hexdigest()


def _jsonable(v: Any) -> Any:
    """Plain JSON data: tuples as lists, numpy / torch scalars as Python numbers."""
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, torch.Tensor):
        return _jsonable(v.tolist())
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v


class SensitivityCache:
    """A folder of sensitivity results, one ``<key>.json`` per :func:`cache_key`.

    Args:
        cache_dir: the folder (created on the first store).
    """

    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(cache_dir)

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.dir / f"{key}.json"

    def load(self, key: str) -> Sensitivity | None:
        """The stored result of ``key``, or None (absent, or unreadable: then it is measured again)."""
        path = self.path(key)
        try:
            data = json.loads(path.read_text())
            if data.get("key") != key or data.get("format") != FORMAT:
                raise ValueError("key or format differs")
            return Sensitivity.from_dict(data["sensitivity"], where=str(path))
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001  # a damaged cache file must never stop a run
            log.warning("sensitivity cache: %s is unreadable (%s); measuring again", path, exc)
            return None

    def store(self, key: str, sens: Sensitivity) -> Path:
        """Write ``sens`` under ``key`` atomically; returns the file."""
        import mpsearch

        path = self.path(key)
        data = {"format": FORMAT, "key": key, "mpsearch_version": mpsearch.__version__,
                "torch_version": torch.__version__, "sensitivity": _jsonable(sens.to_dict())}
        write_text_atomic(path, json.dumps(data, indent=1, allow_nan=True) + "\n")
        return path


def cached(compute: Callable[[], Sensitivity], key: str, cache_dir: str | os.PathLike[str]) -> Sensitivity:
    """The stored result of ``key`` in ``cache_dir``, else ``compute()`` stored there.

    A hit is logged (INFO) with the file it came from, so a user can see that nothing was
    measured; delete the file (or the folder) to force a new measurement.
    """
    cache = SensitivityCache(cache_dir)
    hit = cache.load(key)
    if hit is not None:
        log.info("analyze: sensitivity reused from the cache, %s", cache.path(key))
        return hit
    sens = compute()
    try:
        path = cache.store(key, sens)
    except OSError as exc:  # a read-only or full disk costs the cache, not the result
        log.warning("sensitivity cache: could not write to %s (%s); the result is not cached", cache.dir, exc)
    else:
        log.info("analyze: sensitivity stored in the cache, %s", path)
    return sens


def as_list(batches: Iterable[Any]) -> list[Any]:
    """The batches as a list, so that hashing them does not consume a generator."""
    return batches if isinstance(batches, list) else list(batches)

