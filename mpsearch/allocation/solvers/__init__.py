"""Solver backends by name; see ``_base.py`` for the contract. Engines load on first use."""

from __future__ import annotations

import importlib
import importlib.util

from mpsearch.errors import unknown_name

#: solver name -> "module:class" (imported only when that solver is asked for).
SOLVERS = {
    "cbc": "mpsearch.allocation.solvers.cbc:CbcBackend",
    "highs": "mpsearch.allocation.solvers.highs:HighsBackend",
}

#: LP engines for the relaxation, in order of preference (HiGHS: in-process, warm re-solves).
LP_ENGINES = {
    "highs": "mpsearch.allocation.solvers.highs:HighsLp",
    "cbc": "mpsearch.allocation.solvers.cbc:CbcLp",
}


def get_backend(name: str) -> type:
    """The backend class registered as ``name`` (UnknownNameError listing the valid names)."""
    try:
        module, cls = SOLVERS[name].split(":")
    except KeyError:
        raise unknown_name("solver", name, SOLVERS, "allocate") from None
    return getattr(importlib.import_module(module), cls)


def get_lp_engine(solver: str) -> type:
    """The LP engine to pair with MIP ``solver``: HiGHS whenever highspy is installed, else CBC."""
    name = "highs" if solver == "highs" or importlib.util.find_spec("highspy") is not None else "cbc"
    module, cls = LP_ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)
