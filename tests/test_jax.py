"""JAX specifics: jit compilation once per call, float32/float64 and the x64 flag, devices.

The parametrized suite runs jax_api with ``jax_enable_x64`` on (conftest); the float32 default
is tested here with ``jax.enable_x64(False)`` (thread-local, so nothing leaks) and, with two
host devices, in a fresh interpreter where the flag was never set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from dict_minimize import InvalidDtypeError  # noqa: E402
from dict_minimize.jax_api import minimize  # noqa: E402

TARGET = np.array([1.0, -2.0, 0.5])

_compiles: list[str] | None = None


def _on_event(name: str, *_: Any, **__: Any) -> None:
    if _compiles is not None and name == "/jax/core/compile/backend_compile_duration":
        _compiles.append(name)


jax.monitoring.register_event_duration_secs_listener(_on_event)


@pytest.fixture
def compiles() -> Iterator[list[str]]:
    """XLA compilations during the test."""
    global _compiles
    _compiles = []
    try:
        yield _compiles
    finally:
        _compiles = None


class Traced:
    """An objective that counts how often JAX traces it (Python runs once per trace)."""

    def __init__(self) -> None:
        self.traces = 0
        self.target = jnp.asarray(TARGET)

    def __call__(self, params: Any) -> Any:
        self.traces += 1
        d = params["w"] - self.target
        return jnp.sum(d**2 + 0.25 * d**4) + (params["b"] - 1.0) ** 2 * jnp.cosh(params["b"])


def x0(dtype: Any = jnp.float64) -> dict[str, Any]:
    return {"w": jnp.zeros(3, dtype), "b": jnp.asarray(0.25, dtype)}


@pytest.mark.parametrize(
    ("method", "builders"),
    [("L-BFGS-B", 1), ("Nelder-Mead", 1), ("Newton-CG", 2), ("trust-krylov", 2), ("dogleg", 2)],
)
def test_compiled_once_per_call(method: str, builders: int, compiles: list[str]) -> None:
    """Each derivative builder traces and compiles the objective once, not per evaluation."""
    fun = Traced()
    minimize(fun, x0(), jac=False, method=method, options={"maxiter": 50})  # warm the caches
    fun, compiles[:] = Traced(), []
    res = minimize(fun, x0(), jac=False, method=method, full_output=True)
    assert res.nfev > 5 and (builders == 1 or res.nhev > 3)
    assert fun.traces == builders
    assert len(compiles) == builders  # the packing helpers are cached per layout
    atol = 0.5 if method == "Nelder-Mead" else 2e-4  # stops at maxfev, far from converged
    np.testing.assert_allclose(np.asarray(res.x["w"]), TARGET, atol=atol)


@pytest.mark.parametrize(("method", "builders"), [("L-BFGS-B", 1), ("trust-krylov", 2)])
def test_later_calls_reuse_the_compiled_derivatives(
    method: str, builders: int, compiles: list[str]
) -> None:
    """A second call with the same function and layout compiles nothing; new args do."""
    fun = Traced()
    first = minimize(fun, x0(), jac=False, method=method, full_output=True)
    assert fun.traces == builders
    compiles[:] = []
    again = minimize(fun, x0(), jac=False, method=method, full_output=True)
    assert fun.traces == builders and compiles == []
    np.testing.assert_array_equal(np.asarray(again.x["w"]), np.asarray(first.x["w"]))
    assert (again.nit, again.nfev) == (first.nit, first.nfev)

    def shifted(params: Any, shift: Any) -> Any:
        return fun({"w": params["w"] - shift, "b": params["b"]})

    for shift in (jnp.ones(3), jnp.full(3, 2.0)):  # other args: compiled for them, never stale
        res = minimize(shifted, x0(), args=(shift,), jac=False, method=method, full_output=True)
        np.testing.assert_allclose(np.asarray(res.x["w"]), TARGET + np.asarray(shift), atol=2e-4)


def test_user_gradient_is_called_not_jitted() -> None:
    """With jac=True the objective is the user's code: called eagerly on concrete arrays."""
    calls: list[bool] = []
    target = jnp.asarray(TARGET)

    def fun(params: Any) -> Any:
        calls.append(isinstance(params["w"], jax.core.Tracer))
        d = params["w"] - target
        return jnp.sum(d**2), {"w": 2 * d, "b": 2 * params["b"]}

    res = minimize(fun, x0(), full_output=True)
    assert len(calls) == res.nfev and not any(calls)


def test_user_jitted_value_and_grad() -> None:
    """A user's own jitted jax.value_and_grad is the natural jac=True objective."""
    fun = Traced()
    value_and_grad = jax.jit(jax.value_and_grad(fun))
    res = minimize(value_and_grad, x0(), method="BFGS", full_output=True)
    assert res.success and fun.traces == 1
    np.testing.assert_allclose(np.asarray(res.x["w"]), TARGET, atol=1e-5)


def _own_gradient(params: Any, target: Any) -> Any:
    """A jac=True objective with a barrier at b = 1.2, beyond which it is NaN."""
    d = params["w"] - target
    b = params["b"]
    value = jnp.sum(d**2 + 0.25 * d**4) + (b - 1.0) ** 2 * jnp.cosh(b) - jnp.log(1.2 - b)
    grad_b = 2 * (b - 1.0) * jnp.cosh(b) + (b - 1.0) ** 2 * jnp.sinh(b) + 1 / (1.2 - b)
    return value, {"w": 2 * d + d**3, "b": grad_b}


@pytest.mark.parametrize("method", ["L-BFGS-B", "BFGS", "CG", "TNC"])
def test_jitted_objective_compiled_whole_takes_the_same_steps(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A jax.jit objective is compiled together with the unflattening of the point and the
    flattening of its gradient (one program per evaluation after the first): the same
    iterates, evaluations and result as the same objective called plainly, and a later
    call with the same function and layout reuses the program. From b = -2, CG's and TNC's
    trial steps reach b > 1.2 where the loss is NaN: rejected the same way."""
    import dict_minimize._objective as objective

    fused_calls: list[int] = []
    original = objective.Objective._fused_value_and_grad

    def counting(self: Any, x: Any, fused: Any) -> Any:
        fused_calls.append(1)
        return original(self, x, fused)

    monkeypatch.setattr(objective.Objective, "_fused_value_and_grad", counting)
    target = jnp.asarray(TARGET)
    start = {"w": jnp.zeros(3), "b": jnp.asarray(-2.0)}
    finite: list[bool] = []

    def plain_fun(params: Any, target: Any) -> Any:
        out = _own_gradient(params, target)
        finite.append(bool(np.isfinite(float(out[0]))))
        return out

    plain = minimize(plain_fun, start, args=(target,), method=method, full_output=True)
    assert not fused_calls
    assert all(finite) != (method in ("CG", "TNC"))  # trial points beyond the barrier
    jitted = jax.jit(_own_gradient)
    res = minimize(jitted, start, args=(target,), method=method, full_output=True)
    assert len(fused_calls) == res.nfev - 1  # the first evaluation validates, uncompiled
    assert (res.nit, res.nfev, res.status) == (plain.nit, plain.nfev, plain.status)
    for key in ("w", "b"):
        # XLA fuses the compiled objective's arithmetic: rounding differs in the last bits.
        np.testing.assert_allclose(np.asarray(res.x[key]), np.asarray(plain.x[key]), rtol=1e-9)
        np.testing.assert_allclose(np.asarray(res.jac[key]), np.asarray(plain.jac[key]), atol=1e-9)
    assert res.success and float(res.x["b"]) < 1.2
    assert np.abs(np.asarray(res.jac["b"])) < 1e-4
    assert np.asarray(start["b"]) == -2.0  # x0 untouched
    traces = jitted._cache_size()
    again = minimize(jitted, start, args=(target,), method=method, full_output=True)
    assert jitted._cache_size() == traces and again.nfev == res.nfev


def test_jitted_objective_falls_back_when_it_cannot_be_compiled_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If the whole program fails on its first call (an objective that cannot be traced
    inside another jit), the run goes on the usual way, with the same result."""
    import dict_minimize._objective as objective

    def fails(*_: Any, **__: Any) -> Any:
        def program(flat: Any) -> Any:
            raise TypeError("cannot be traced here")

        return program

    target = jnp.asarray(TARGET)
    start = {"w": jnp.zeros(3), "b": jnp.asarray(0.5)}
    reference = minimize(_own_gradient, start, args=(target,), full_output=True)
    monkeypatch.setattr(objective, "_flat_own_gradient", fails)
    res = minimize(jax.jit(_own_gradient), start, args=(target,), full_output=True)
    assert (res.nit, res.nfev) == (reference.nit, reference.nfev)
    np.testing.assert_allclose(np.asarray(res.x["w"]), np.asarray(reference.x["w"]), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float32_and_float64(dtype: str) -> None:
    """Each keeps its dtype; float64 reaches float64 accuracy (x64 is on in this session)."""
    res = minimize(
        Traced(),
        x0(jnp.dtype(dtype)),
        jac=False,
        method="trust-exact",
        options={"gtol": 1e-10 if dtype == "float64" else 1e-4},
        full_output=True,
    )
    assert res.x["w"].dtype == jnp.dtype(dtype) and res.jac["b"].dtype == jnp.dtype(dtype)
    tol = 1e-9 if dtype == "float64" else 1e-3
    np.testing.assert_allclose(np.asarray(res.x["w"], np.float64), TARGET, atol=tol)


def test_x64_off_computes_in_float32() -> None:
    """Without x64 the device side is float32; the flag is read, never changed."""
    seen: list[Any] = []

    def fun(params: Any) -> Any:
        seen.append(params["w"].dtype)
        return Traced()(params)

    with jax.enable_x64(False):
        start = x0(jnp.float32)
        res = minimize(fun, start, jac=False, full_output=True)
        assert not jax.config.jax_enable_x64
        assert res.x["w"].dtype == jnp.float32 and seen == [jnp.float32]
    assert jax.config.jax_enable_x64
    np.testing.assert_allclose(np.asarray(res.x["w"]), TARGET, atol=1e-3)


def test_float64_x0_without_x64_is_refused() -> None:
    """float64 arrays made under x64 cannot be optimized where x64 is off: say so."""
    start = x0(jnp.float64)
    with jax.enable_x64(False), pytest.raises(InvalidDtypeError, match="jax_enable_x64"):
        minimize(Traced(), start, jac=False)


_SUBPROCESS = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from dict_minimize.jax_api import minimize

assert not jax.config.jax_enable_x64 and len(jax.devices()) == 2
target = jnp.asarray([1.0, -2.0, 0.5])
def loss(p):
    return jnp.sum((p["w"] - target) ** 2) + jnp.sum(p["m"] ** 2)

# float32 by default, on the second device
dev = jax.devices()[1]
x0 = {"w": jax.device_put(jnp.zeros(3), dev), "m": jax.device_put(jnp.ones((2, 2)), dev)}
res = minimize(loss, x0, jac=False, full_output=True)
assert res.success, res.message
for v in (*res.x.values(), *res.jac.values()):
    assert v.dtype == jnp.float32 and v.devices() == {dev}, (v.dtype, v.devices())
np.testing.assert_allclose(np.asarray(res.x["w"]), [1.0, -2.0, 0.5], atol=1e-4)
assert not jax.config.jax_enable_x64  # read, never set

# a leaf sharded over both devices: optimized and returned replicated over them
mesh = Mesh(np.array(jax.devices()), ("d",))
sharded = jax.device_put(jnp.ones((2, 2)), NamedSharding(mesh, PartitionSpec("d")))
x = minimize(loss, {"w": jax.device_put(jnp.zeros(3), NamedSharding(mesh, PartitionSpec())),
                    "m": sharded}, jac=False)
assert x["m"].devices() == set(jax.devices()) and x["m"].sharding.is_fully_replicated
np.testing.assert_allclose(np.asarray(x["m"]), 0.0, atol=1e-4)

# float64 inside the context manager, and the flag is back off afterwards
with jax.enable_x64(True):
    x = minimize(loss, {"w": jnp.zeros(3, jnp.float64), "m": jnp.ones((2, 2))}, jac=False)
    assert x["w"].dtype == jnp.float64
assert not jax.config.jax_enable_x64
print("ok")
"""


def test_default_precision_and_devices_in_fresh_interpreter() -> None:
    """Never-set x64 flag, two host devices: float32, device and sharding round trips."""
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu"
    )
    env.pop("JAX_ENABLE_X64", None)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SUBPROCESS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_constraint_jacobian_wide_and_tall() -> None:
    """Constraint Jacobians by reverse mode (few rows) and forward mode (many rows) agree."""
    target = jnp.asarray(TARGET)

    def loss(p: Any) -> Any:
        return jnp.sum((p["w"] - target) ** 2)

    def one(p: Any) -> Any:  # 1 row < 3 parameters; active: sum(TARGET) < 1
        return jnp.sum(p["w"]) - 1.0

    def many(p: Any) -> Any:  # 6 rows > 3 parameters
        return jnp.concatenate([(jnp.sum(p["w"]) - 1.0)[None], 5.0 - p["w"], 5.0 + p["w"]])

    w0 = {"w": jnp.zeros(3)}
    a = minimize(loss, w0, jac=False, method="SLSQP", constraints={"type": "ineq", "fun": one})
    b = minimize(loss, w0, jac=False, method="SLSQP", constraints={"type": "ineq", "fun": many})
    np.testing.assert_allclose(np.asarray(a["w"]), np.asarray(b["w"]), atol=1e-8)
    assert float(jnp.sum(a["w"])) == pytest.approx(1.0, abs=1e-8)


def test_docstring_examples() -> None:
    """The examples of jax_api.minimize and jax_api.least_squares run as written."""
    import doctest

    from dict_minimize import jax_api

    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for name in ("minimize", "least_squares"):
        for test in doctest.DocTestFinder().find(getattr(jax_api, name), name, globs={}):
            runner.run(test)
    assert runner.tries > 0 and runner.failures == 0
