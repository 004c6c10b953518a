"""TensorFlow specifics: variables are read but never assigned, tf.function objectives, and
derivatives traced once per call (not per evaluation)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from dict_minimize.tensorflow_api import minimize  # noqa: E402

TARGET = np.array([1.0, -2.0, 0.5])


class Traced:
    """An objective that counts how often TensorFlow traces it (Python runs once per trace)."""

    def __init__(self) -> None:
        self.traces = 0
        self.target = tf.constant(TARGET)

    def __call__(self, params: Any) -> Any:
        self.traces += 1
        d = tf.cast(params["w"], tf.float64) - self.target
        b = tf.cast(params["b"], tf.float64)
        return tf.reduce_sum(d**2 + 0.25 * d**4) + (b - 1.0) ** 2 * tf.cosh(b)


def x0() -> dict[str, Any]:
    return {"w": tf.Variable(tf.zeros(3, tf.float32)), "b": tf.constant(0.25, tf.float64)}


@pytest.mark.parametrize(
    ("method", "builders"),
    [("L-BFGS-B", 1), ("Nelder-Mead", 1), ("Newton-CG", 2), ("trust-krylov", 2), ("dogleg", 2)],
)
def test_traced_once_per_call(method: str, builders: int) -> None:
    """Each derivative builder traces the objective once, however many evaluations follow."""
    fun = Traced()
    res = minimize(fun, x0(), jac=False, method=method, full_output=True)
    assert res.nfev > 5 and (builders == 1 or res.nhev > 3)
    assert fun.traces == builders
    atol = 0.5 if method == "Nelder-Mead" else 2e-4  # stops at maxfev, far from converged
    np.testing.assert_allclose(res.x["w"].numpy(), TARGET, atol=atol)
    minimize(fun, x0(), jac=False, method=method)  # the same function again: traces reused
    assert fun.traces == builders
    other = Traced()  # another function (same layout) traces anew
    minimize(other, x0(), jac=False, method=method)
    assert other.traces == builders


def test_variables_are_read_never_assigned() -> None:
    """x0 may hold variables; the result holds new tensors of the same dtypes."""
    start = x0()
    variable = start["w"]
    for jac in (False, True):
        fun = Traced()
        objective = fun if not jac else _with_tape(fun)
        res = minimize(objective, start, jac=jac, method="BFGS", full_output=True)
        assert res.success
        np.testing.assert_array_equal(variable.numpy(), np.zeros(3))
        assert start["w"] is variable
        for value, like in ((res.x["w"], tf.float32), (res.x["b"], tf.float64)):
            assert isinstance(value, tf.Tensor) and not isinstance(value, tf.Variable)
            assert value.dtype == like and value.device == variable.device
        np.testing.assert_allclose(res.x["w"].numpy(), TARGET, atol=1e-4)


def _with_tape(loss: Any) -> Any:
    """The dict-minimize 0.0.4 convention: fun returns (loss, grads) from a GradientTape."""

    def fun(params: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(params)
            value = loss(params)
        return value, tape.gradient(value, params)

    return fun


def test_tf_function_objectives() -> None:
    """A tf.function objective works both ways; with jac=True TF itself traces it once."""
    loss = Traced()
    auto = minimize(tf.function(loss), x0(), jac=False, method="trust-exact", full_output=True)
    # Traced once in all: the value-and-grad and Hessian graphs share TF's trace of it.
    assert auto.success and loss.traces == 1
    compiled = tf.function(_with_tape(Traced()))
    res = minimize(compiled, x0(), method="L-BFGS-B", full_output=True)
    assert res.success and res.nfev > 5
    assert compiled.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(res.x["w"].numpy(), auto.x["w"].numpy(), atol=1e-4)


def test_eager_only_objective_gets_a_hint() -> None:
    """.numpy() inside a jac=False objective fails in graph mode with a note saying why."""

    def eager(params: Any) -> Any:
        value = np.sum((params["w"].numpy() - TARGET) ** 2)
        return tf.constant(value)

    with pytest.raises(AttributeError) as info:
        minimize(eager, x0(), jac=False)
    assert any("tf.function (graph mode)" in note for note in info.value.__notes__)


def test_tensorflow_numpy_objective() -> None:
    """Objectives written with tf.experimental.numpy differentiate like tf ops."""
    tnp = tf.experimental.numpy
    target = tnp.asarray(TARGET)

    def fun(params: Any) -> Any:
        return tnp.sum((params["w"] - target) ** 2) + tnp.sum(params["m"] ** 2)

    start = {"w": tf.zeros(3, tf.float64), "m": tf.ones((2, 2), tf.float64)}
    res = minimize(fun, start, jac=False, method="Newton-CG", full_output=True)
    assert res.success
    np.testing.assert_allclose(res.x["w"].numpy(), TARGET, atol=1e-8)
    np.testing.assert_allclose(res.x["m"].numpy(), 0.0, atol=1e-8)


def test_docstring_examples() -> None:
    """The examples of tensorflow_api.minimize and tensorflow_api.least_squares run as written."""
    import doctest

    from dict_minimize import tensorflow_api

    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for name in ("minimize", "least_squares"):
        for test in doctest.DocTestFinder().find(getattr(tensorflow_api, name), name, globs={}):
            runner.run(test)
    assert runner.tries > 0 and runner.failures == 0
