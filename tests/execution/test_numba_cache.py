"""Collecting the tests and compiling a numba kernel write nothing into the source tree: numba's disk
cache goes to ``$NUMBA_CACHE_DIR`` when the user set it, else to ``<mpsearch cache root>/numba``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "mpsearch"
NUMBA = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba not installed")

#: compiles (or loads) the one-pass requant kernel and checks one of its integers
COMPILE = ("import numpy as np; from mpsearch.execution.kernels import _numba_kernels as nk; "
           "out = np.empty((1, 1), np.int8); one = lambda v: np.full(1, v, np.int64); "
           "nk.requant_kernel()(np.array([[1000]], np.int32), one(3), one(16), one(5), one(-128), one(127), out); "
           "assert out[0, 0] == 94, out")


def _written(tree: Path) -> set[str]:
    """Every file and folder under ``tree`` that is not Python source (which nothing here writes)."""
    return {str(p.relative_to(tree)) for p in tree.rglob("*") if p.suffix != ".py"}


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    env["MPSEARCH_CACHE"] = str(tmp_path / "mpsearch-cache")
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pyc")  # Python's own bytecode, not what is tested here
    return env


@NUMBA
def test_collecting_and_compiling_write_nothing_into_the_source_tree(tmp_path: Path) -> None:
    env = _env(tmp_path)
    before = _written(PKG)
    _run([sys.executable, "-m", "pytest", "tests/execution", "--collect-only", "-q", "-p", "no:cacheprovider"], env)
    _run([sys.executable, "-c", COMPILE], env)
    assert _written(PKG) == before
    cached = {p.suffix for p in (tmp_path / "mpsearch-cache" / "numba").rglob("*")}
    assert {".nbi", ".nbc"} <= cached  # the kernel's index and machine code went to the cache root


@NUMBA
def test_a_numba_cache_dir_set_by_the_user_wins(tmp_path: Path) -> None:
    env = _env(tmp_path)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    _run([sys.executable, "-c", COMPILE], env)
    assert {".nbi", ".nbc"} <= {p.suffix for p in (tmp_path / "mine").rglob("*")}
    assert not (tmp_path / "mpsearch-cache").exists()
