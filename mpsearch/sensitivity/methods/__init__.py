"""Sensitivity methods, by name (see ``_base.py`` for the contract)."""

from __future__ import annotations

from mpsearch.sensitivity.methods._base import Context, Method
from mpsearch.sensitivity.methods.eigen import EigenMethod
from mpsearch.sensitivity.methods.empirical import EmpiricalMethod
from mpsearch.sensitivity.methods.fisher import FisherMethod
from mpsearch.sensitivity.methods.hessian import HessianMethod

#: name -> method class; ``analyze(method=name)``.
METHODS: dict[str, type[Method]] = {m.name: m for m in (HessianMethod, EigenMethod, FisherMethod, EmpiricalMethod)}

__all__ = ["METHODS", "Context", "Method"]
