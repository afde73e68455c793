"""Solver backends by name; see ``_base.py`` for the contract. Engines load on first use."""

from __future__ import annotations

import importlib

from mpsearch.errors import unknown_name

#: solver name -> "module:class" (imported only when that solver is asked for).
SOLVERS = {
    "cbc": "mpsearch.allocation.solvers.cbc:CbcBackend",
    "highs": "mpsearch.allocation.solvers.highs:HighsBackend",
}


def get_backend(name: str) -> type:
    """The backend class registered as ``name`` (UnknownNameError listing the valid names)."""
    try:
        module, cls = SOLVERS[name].split(":")
    except KeyError:
        raise unknown_name("solver", name, SOLVERS, "allocate") from None
    return getattr(importlib.import_module(module), cls)
