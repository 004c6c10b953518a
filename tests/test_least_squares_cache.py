"""least_squares compiles once per call signature: a later call with the same residual
function and shapes reuses the traced programs (JAX, TensorFlow) with its own data, and
anything that would make them stale (a rebound global, new shapes) builds new ones."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.optimize as so

from cases import Case

TIGHT = {"ftol": 1e-14, "xtol": 1e-14, "gtol": 1e-14}
T = np.linspace(0.0, 4.0, 41)
_RNG = np.random.default_rng(7)
NOISE = 0.05 * _RNG.standard_normal((2, T.size))
X0 = {"a": 1.0, "kc": [1.0, 0.0]}

# Read by the residual functions below: a tracing backend bakes it into its programs.
OFFSET = 0.0

MODES = {
    "general": {},
    "per-sample": {"batched_args": (0, 1)},
    # 41 samples in chunks of 6: the last chunk overlaps the one before it.
    "chunked": {"batched_args": (0, 1), "chunk_size": 6},
    "geodesic": {"batched_args": (0, 1), "geodesic": True},
    "geodesic-chunked": {"batched_args": (0, 1), "chunk_size": 6, "geodesic": True},
}


def _data(amplitude: float, rate: float, shift: float, noise: int) -> np.ndarray:
    return np.asarray(amplitude * np.exp(-rate * T) + shift + NOISE[noise])


def _scipy(y: np.ndarray, offset: float = 0.0) -> np.ndarray:
    def fun(x: np.ndarray) -> np.ndarray:
        return np.asarray(x[0] * np.exp(-x[1] * T) + x[2] + offset - y)

    return np.asarray(so.least_squares(fun, np.array([1.0, 1.0, 0.0]), **TIGHT).x)


def _flat(case: Case, x: dict[str, Any]) -> np.ndarray:
    return np.concatenate([case.numpy(x["a"]).ravel(), case.numpy(x["kc"]).ravel()])


class Counted:
    """``a·exp(-k·t) + c + OFFSET - y``, counting how often its Python body runs (once per
    trace on a tracing backend, once per evaluation on the others)."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.runs = 0

    def residual_fn(self) -> Any:
        def residual_fn(p: Any, t: Any, y: Any) -> Any:
            self.runs += 1
            return p["a"] * self.xp.exp(-p["kc"][0] * t) + p["kc"][1] + OFFSET - y

        return residual_fn


def _fit(case: Case, fn: Any, y: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    x0 = {k: case.tensor(v) for k, v in X0.items()}
    res = case.api.least_squares(
        fn, x0, args=(case.tensor(T), case.tensor(y)), **TIGHT, options=options
    )
    assert res.success, res.message
    return _flat(case, res.x)


@pytest.mark.parametrize("mode", list(MODES))
def test_second_call_reuses_programs_with_new_data(case: Case, mode: str) -> None:
    """The data are inputs of the compiled programs, not constants baked into them: a second
    call with other values of the same shapes traces nothing and fits its own data."""
    if not case.autodiff and "geodesic" in mode:
        pytest.skip("geodesic steps with batched args need autodiff")
    counted = Counted(case.xp)
    fn = counted.residual_fn()
    options = MODES[mode]
    y1, y2 = _data(2.5, 1.3, 0.5, 0), _data(1.5, 0.7, -0.2, 1)
    np.testing.assert_allclose(_fit(case, fn, y1, options), _scipy(y1), rtol=1e-7, atol=1e-7)
    first = counted.runs
    assert first > 0
    np.testing.assert_allclose(_fit(case, fn, y2, options), _scipy(y2), rtol=1e-7, atol=1e-7)
    if case.traced:
        assert counted.runs == first  # no trace at all: every program came from the cache


def test_rebound_global_and_new_shapes_build_anew(case: Case) -> None:
    """What a program baked in (a global it reads) or was traced for (shapes) changes: the
    next call traces again instead of running a stale program."""
    global OFFSET
    counted = Counted(case.xp)
    fn = counted.residual_fn()
    y = _data(2.5, 1.3, 0.5, 0)
    try:
        _fit(case, fn, y, {})
        runs = counted.runs
        OFFSET = 0.25
        np.testing.assert_allclose(_fit(case, fn, y, {}), _scipy(y, 0.25), rtol=1e-7, atol=1e-7)
        assert counted.runs > runs
    finally:
        OFFSET = 0.0
    runs = counted.runs
    x0 = {k: case.tensor(v) for k, v in X0.items()}
    short = case.api.least_squares(fn, x0, args=(case.tensor(T[:20]), case.tensor(y[:20])), **TIGHT)
    assert short.success and counted.runs > runs
    assert case.numpy(short.fun).shape == (20,)


def test_cached_programs_do_not_keep_the_function_alive(case: Case) -> None:
    """The cache holds residual functions weakly: dropping the function frees its entry."""
    import gc
    import weakref

    from dict_minimize.solvers._problem import _CACHE

    def make() -> Any:
        def residual_fn(p: Any, t: Any, y: Any) -> Any:
            return p["a"] * case.xp.exp(-p["kc"][0] * t) + p["kc"][1] - y

        return residual_fn

    fn = make()
    _fit(case, fn, _data(2.5, 1.3, 0.5, 0), {"batched_args": (0, 1)})
    assert fn in _CACHE
    alive = weakref.ref(fn)
    del fn
    gc.collect()
    assert alive() is None
