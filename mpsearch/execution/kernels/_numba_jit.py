"""How our numba kernels are compiled: no fastmath, no GIL, and a disk cache outside the source tree.

numba (the optional ``fast`` extra) is imported only here, lazily. ``cache=True`` keeps compiled
kernels on disk so the JIT cost is paid once per machine; by default numba writes that cache
into the ``__pycache__`` folder next to the source file, i.e. into the installed package (and a
checkout's source tree, which running or collecting the tests must not change). So unless the
user chose a folder (``$NUMBA_CACHE_DIR`` or numba's config file), :func:`load_numba` points numba
at ``<cache root>/numba``: ``$MPSEARCH_CACHE/numba``, else ``~/.cache/mpsearch/numba`` -- the cache
root of the demo checkpoints (:func:`mpsearch.demo.train.cache_root`). numba reads
``NUMBA_CACHE_DIR`` when it is imported and when its config is reloaded, so the variable is set
(never overriding a value the user gave) and the config reloaded before any kernel is decorated.
The variable then also applies to other numba code in the process that caches to disk.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

#: numba's own variable for its cache folder.
NUMBA_CACHE_ENV = "NUMBA_CACHE_DIR"


def available() -> bool:
    """True when numba can be imported (checked without importing it)."""
    return importlib.util.find_spec("numba") is not None


def default_cache_dir() -> Path:
    """``<cache root>/numba``: where our kernels are cached unless the user chose a folder."""
    from mpsearch.demo.train import cache_root

    return cache_root() / "numba"


def load_numba() -> ModuleType:
    """numba, imported, with its disk cache outside the source tree (see the module docstring)."""
    import numba

    if not os.environ.get(NUMBA_CACHE_ENV) and not numba.config.CACHE_DIR:
        os.environ[NUMBA_CACHE_ENV] = str(default_cache_dir())
        numba.core.config.reload_config()  # numba may have read the environment before we set it
    return numba


def jit(py_func: Callable[..., Any], cache: bool = True) -> Callable[..., Any]:
    """``py_func`` compiled by numba in nopython mode, ``fastmath`` off, without the GIL; ``cache``
    keeps it on disk (compiled or loaded on its first call)."""
    return load_numba().njit(cache=cache, fastmath=False, nogil=True)(py_func)
