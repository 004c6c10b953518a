"""Fixtures shared by the suite: ``case`` runs a test once per installed backend."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The suite compares with scipy in float64; test_jax.py covers JAX's float32 default.
os.environ.setdefault("JAX_ENABLE_X64", "1")

from cases import FACTORIES, Case

_CACHE: dict[str, Case] = {}


def _params() -> list[object]:
    out = []
    for name, (module, _) in FACTORIES.items():
        missing = importlib.util.find_spec(module) is None
        marks = [pytest.mark.skip(reason=f"{module} is not installed")] if missing else []
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@pytest.fixture(params=_params())
def case(request: pytest.FixtureRequest) -> Case:
    """The backend under test (one instance per backend for the whole session)."""
    name = request.param
    if name not in _CACHE:
        _CACHE[name] = FACTORIES[name][1]()
    return _CACHE[name]


@pytest.fixture
def autodiff_case(case: Case) -> Case:
    """Like ``case``, for tests that need the framework's autodiff (skips numpy)."""
    if not case.autodiff:
        pytest.skip(f"{case.name} has no autodiff")
    return case
