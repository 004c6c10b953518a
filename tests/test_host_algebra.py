"""The step algebra of small CPU problems on the host (``options["host_algebra"]``).

The loop is the same code on either backend, so a run with the algebra in NumPy must take
the same steps as one in the framework: same point (to rounding), same counts, same status,
with the result's tensors on x0's framework; and the default takes the host path exactly
where it should.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cases import Case
from dict_minimize import DictMinimizeError, OptimizationInterrupted
from dict_minimize.solvers import _host_algebra

_RNG = np.random.default_rng(3)
T = np.linspace(0.0, 4.0, 60)
Y = 2.0 * np.exp(-1.1 * T) + 0.3 * np.sin(2.0 * T) + 0.02 * _RNG.standard_normal(T.size)
Y_OUT = Y.copy()
Y_OUT[[5, 40]] += [1.5, -2.0]


def _residual(case: Case) -> Any:
    xp = case.xp

    def residual_fn(p: Any, t: Any, y: Any) -> Any:
        return p["a"] * xp.exp(-p["k"] * t) + p["b"] * xp.sin(p["w"] * t) - y

    return residual_fn


def _x0(case: Case, dtype: str = "float64") -> dict[str, Any]:
    return {k: case.tensor(v, dtype) for k, v in {"a": 1.0, "k": 0.5, "b": 0.1, "w": 1.8}.items()}


def _flat(case: Case, x: dict[str, Any]) -> np.ndarray:
    return np.array([float(case.numpy(x[k])) for k in ("a", "k", "b", "w")])


def _run(case: Case, host: Any, y: np.ndarray = Y, **kwargs: Any) -> Any:
    options = {"host_algebra": host, **kwargs.pop("options", {})}
    return case.api.least_squares(
        _residual(case),
        _x0(case),
        args=(case.tensor(T), case.tensor(y)),
        options=options,
        **kwargs,
    )


class _Spy:
    """Counts the host linearizations (the host path's one crossing per Jacobian)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = _host_algebra.HostAlgebra.linearize

        def linearize(this: Any, flat: Any) -> Any:
            self.calls += 1
            return original(this, flat)

        monkeypatch.setattr(_host_algebra.HostAlgebra, "linearize", linearize)


SETTINGS = [
    pytest.param({}, id="lm"),
    pytest.param({"method": "trf", "lb_dict": {"w": 1.5}, "ub_dict": {"a": 1.9}}, id="trf-bounds"),
    pytest.param({"loss": "soft_l1", "f_scale": 0.1, "y": Y_OUT}, id="soft_l1"),
    pytest.param({"options": {"geodesic": True}}, id="geodesic"),
    pytest.param({"options": {"damping": "marquardt", "x_scale": 1.0}}, id="marquardt"),
    pytest.param(
        {"options": {"batched_args": (0, 1), "chunk_size": 7, "geodesic": True}},
        id="row-chunks-geodesic",  # no J kept: the products come from the framework
    ),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_host_algebra_takes_the_framework_loops_steps(
    autodiff_case: Case, settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    case = autodiff_case
    spy = _Spy(monkeypatch)
    on_device = _run(case, False, **dict(settings))
    assert spy.calls == 0
    on_host = _run(case, True, **dict(settings))
    assert spy.calls == on_host.njev > 0
    np.testing.assert_allclose(_flat(case, on_host.x), _flat(case, on_device.x), rtol=1e-9)
    np.testing.assert_allclose(on_host.cost, on_device.cost, rtol=1e-10)
    assert (on_host.nfev, on_host.njev, on_host.nit, on_host.status) == (
        on_device.nfev,
        on_device.njev,
        on_device.nit,
        on_device.status,
    )
    np.testing.assert_allclose(on_host.history["cost"], on_device.history["cost"], rtol=1e-9)
    # The result is made of x0's framework tensors, as on the device path.
    for res in (on_host, on_device):
        assert all(case.backend.is_leaf(v) for v in res.x.values())
        assert case.backend.is_leaf(res.fun) and case.backend.is_leaf(res.grad["a"])
    np.testing.assert_allclose(case.numpy(on_host.fun), case.numpy(on_device.fun), atol=1e-9)


def test_auto_takes_the_host_path_for_small_cpu_problems_where_it_pays(
    autodiff_case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default: TensorFlow (tens of microseconds per eager operation), not PyTorch or JAX
    (measured: within ±5% either way, so the loop stays in the framework)."""
    case = autodiff_case
    spy = _Spy(monkeypatch)
    res = _run(case, "auto")
    if not case.backend.small_algebra_on_host:
        assert case.name in ("torch", "jax") and spy.calls == 0
        # The rest of this test is about the backends that take the host path by default.
        monkeypatch.setattr(type(case.backend), "small_algebra_on_host", True)
        res = _run(case, "auto")
    assert spy.calls == res.njev > 0
    spy.calls = 0
    # float32 parameters too: the loop works on the flat float64 vector either way.
    x32 = _x0(case, "float32")
    res32 = case.api.least_squares(
        _residual(case), x32, args=(case.tensor(T, "float32"), case.tensor(Y, "float32"))
    )
    assert res32.success and spy.calls == res32.njev
    assert all(case.backend.leaf_meta(v)[1] == case.dtypes["float32"] for v in res32.x.values())
    spy.calls = 0
    # The matrix-free mode and larger problems keep the loop in the framework.
    _run(case, "auto", options={"linear_solver": "cg", "x_scale": 1.0})
    assert spy.calls == 0
    monkeypatch.setattr(_host_algebra, "HOST_ALGEBRA_MAX_N", 3)
    monkeypatch.setattr("dict_minimize._least_squares.HOST_ALGEBRA_MAX_N", 3)
    _run(case, "auto")
    assert spy.calls == 0


def test_host_algebra_callback_and_interruption_see_framework_tensors(autodiff_case: Case) -> None:
    case = autodiff_case
    seen: list[Any] = []

    def callback(params: Any) -> None:
        seen.append(params)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(OptimizationInterrupted) as info:
        _run(case, True, callback=callback)
    assert all(case.backend.is_leaf(v) for p in seen for v in p.values())
    partial = info.value.result
    assert all(case.backend.is_leaf(v) for v in partial.x.values())
    np.testing.assert_allclose(_flat(case, partial.x), _flat(case, seen[-1]))


def test_host_algebra_option_is_validated(case: Case) -> None:
    with pytest.raises(DictMinimizeError, match="host_algebra"):
        _run(case, "yes")
    if case.autodiff:
        with pytest.raises(DictMinimizeError, match=r"host_algebra.*matrix-free"):
            _run(case, True, options={"linear_solver": "cg", "x_scale": 1.0})
