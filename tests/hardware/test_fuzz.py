"""Fuzzed and malformed profiles never raise anything but MpsearchError subclasses."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpsearch.core.profile import HardwareProfile
from mpsearch.errors import MpsearchError
from mpsearch.hardware import load_profile

from .conftest import BASE

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                    _text, st.sampled_from(["w8a8", "w4a4", "w99a8", "2.0e12", "-1", "per_channel", "conv2d"]))
_junk = st.recursive(_scalar, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                     st.dictionaries(_text, kids, max_size=4)), max_leaves=12)


def _paths(node, prefix=()):
    """Every (container, key) location inside a nested dict/list."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield node, k
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield node, i
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated_profiles(draw):
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        locations = list(_paths(data))
        container, key = draw(st.sampled_from(locations))
        action = draw(st.sampled_from(["replace", "delete", "add", "negate"]))
        if action == "replace":
            container[key] = draw(_junk)
        elif action == "delete":
            del container[key]
        elif action == "add" and isinstance(container, dict):
            container[draw(_text)] = draw(_junk)
        elif action == "negate" and isinstance(container[key], (int, float)) and not isinstance(container[key], bool):
            container[key] = -container[key]
    return data


def _load(text: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(text)
        try:
            return load_profile(path)
        except MpsearchError:
            return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_profiles())
def test_mutated_profiles_load_or_raise_mpsearch_errors(data):
    result = _load(yaml.safe_dump(data, sort_keys=False))
    assert result is None or isinstance(result, HardwareProfile)


@settings(max_examples=60, deadline=None)
@given(_junk)
def test_arbitrary_yaml_documents(data):
    assert _load(yaml.safe_dump(data)) is None  # never a valid profile, never a foreign exception


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(text):
    assert _load(text) is None
