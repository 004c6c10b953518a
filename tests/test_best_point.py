"""An error or Ctrl-C mid-run keeps the best point found so far, on every path.

``minimize`` with each scipy method, ``least_squares`` with each method, and the three ``fit``
helpers: an exception raised at a chosen evaluation reaches the caller with ``.result``
holding the best point (status -3), and a ``KeyboardInterrupt`` becomes
``OptimizationInterrupted`` (a ``KeyboardInterrupt``) whose ``.result`` holds it (status -2).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cases import Case
from dict_minimize import METHODS, OptimizationInterrupted
from problems import SHAPES, CoupledExp


def _flat(case: Case, tree: Any) -> np.ndarray:
    return np.concatenate([case.numpy(tree[k]).reshape(-1) for k in tree])


def _failure(kind: str) -> BaseException:
    return KeyboardInterrupt() if kind == "ctrl-c" else RuntimeError("sensor offline")


def _check_raised(kind: str, info: pytest.ExceptionInfo[BaseException]) -> Any:
    """The result the exception carries, after checking its type and status."""
    exc = info.value
    result = exc.result  # type: ignore[attr-defined]
    solver = result.result if "params" in result else result  # a FitResult holds the solver's
    if kind == "ctrl-c":
        assert isinstance(exc, OptimizationInterrupted) and isinstance(exc, KeyboardInterrupt)
        assert solver.status == -2 and "interrupted" in solver.message
    else:
        assert isinstance(exc, RuntimeError) and "sensor offline" in str(exc)
        assert solver.status == -3 and "sensor offline" in solver.message
        assert any(".result" in note for note in exc.__notes__)
    assert solver.success is False
    return result


# -- minimize: every method ---------------------------------------------------------------------


#: Methods run on the compiled backends too (the others on NumPy and PyTorch): with a
#: user gradient every backend evaluates the objective the same way, eagerly.
SAMPLE = ("L-BFGS-B", "Nelder-Mead", "trust-ncg")


@pytest.mark.parametrize("kind", ["error", "ctrl-c"])
@pytest.mark.parametrize("method", [info.name for info in METHODS.values()])
def test_minimize_keeps_the_best_point(case: Case, method: str, kind: str) -> None:
    if case.traced and method not in SAMPLE:
        pytest.skip(f"compiled backends: {', '.join(SAMPLE)} only")
    problem = CoupledExp(case)
    points: list[np.ndarray] = []
    losses: list[float] = []
    fail_at = 5  # dogleg and trust-exact converge in 6 evaluations

    def fun(params: Any) -> Any:
        if len(points) + 1 == fail_at:
            raise _failure(kind)
        loss, grad = problem.fun_and_grad(params)
        points.append(_flat(case, params))
        losses.append(float(case.numpy(loss)))
        return loss, grad

    kwargs: dict[str, Any] = {}
    if METHODS[method.lower()].second_order != "none":
        kwargs["hessp"] = problem.hessp
    with pytest.raises((RuntimeError, OptimizationInterrupted)) as info:
        case.api.minimize(fun, problem.x0(), method=method, full_output=True, **kwargs)
    result = _check_raised(kind, info)
    best = int(np.argmin(losses))
    assert result.nfev == fail_at and len(points) == fail_at - 1
    np.testing.assert_array_equal(_flat(case, result.x), points[best])
    assert list(result.x) == list(SHAPES) and result.fun == losses[best] == result.best_fun


def test_hessp_error_keeps_the_best_point(case: Case) -> None:
    problem = CoupledExp(case)
    calls: list[int] = []

    def hessp(params: Any, p: Any) -> Any:
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("sensor offline")
        return problem.hessp(params, p)

    with pytest.raises(RuntimeError) as info:
        case.api.minimize(problem.fun_and_grad, problem.x0(), method="trust-ncg", hessp=hessp)
    result = _check_raised("error", info)
    x = _flat(case, result.x)
    assert result.fun == problem.ref_value(x) < problem.ref_value(_flat(case, problem.x0()))


# -- least_squares: every method ----------------------------------------------------------------

_T = np.linspace(0.0, 2.0, 30)
_Y = 1.5 * np.exp(-0.7 * _T) + 0.3 * _T


def _ls_problem(case: Case) -> tuple[Any, Any, tuple[Any, Any]]:
    xp = case.xp

    def residual_fn(p: Any, t: Any, y: Any) -> Any:
        return p["a"] * xp.exp(-p["k"] * t) + p["c"] * t - y

    x0 = {"a": case.tensor(0.5), "k": case.tensor(2.0), "c": case.tensor(0.0)}
    return residual_fn, x0, (case.tensor(_T), case.tensor(_Y))


def _cost(p: np.ndarray) -> float:
    r = p[0] * np.exp(-p[1] * _T) + p[2] * _T - _Y
    return 0.5 * float(r @ r)


@pytest.mark.parametrize("kind", ["error", "ctrl-c"])
@pytest.mark.parametrize("method", ["lm", "trf", "scipy-trf", "scipy-dogbox", "scipy-lm"])
def test_least_squares_keeps_the_best_point(case: Case, method: str, kind: str) -> None:
    """The failure comes from residual_fn at the 3rd call after one found a lower cost than
    x0's (or, on compiled backends, from the callback at the 3rd iteration; scipy-lm takes
    no callback)."""
    residual_fn, x0, args = _ls_problem(case)
    compiled = case.traced
    if compiled and method not in ("lm", "scipy-trf"):  # (scipy-lm takes no callback)
        pytest.skip("compiled backends: lm and scipy-trf only, failing in the callback")
    calls: list[np.ndarray] = []
    since_progress: list[int] = []

    def failing_residual(p: Any, t: Any, y: Any) -> Any:
        if not compiled:
            costs = [_cost(q) for q in calls]
            if costs and min(costs) < 0.9 * costs[0]:  # (not just a stencil point of numpy)
                since_progress.append(1)
                if len(since_progress) == 3:
                    raise _failure(kind)
            calls.append(np.array([float(case.numpy(p[k])) for k in ("a", "k", "c")]))
        return residual_fn(p, t, y)

    iterations: list[int] = []

    def callback(params: Any) -> None:
        iterations.append(1)
        if len(iterations) == 3:
            raise _failure(kind)

    kwargs: dict[str, Any] = {"callback": callback} if compiled else {}
    if method == "trf":
        kwargs.update(lb_dict={"k": 0.0}, ub_dict={"c": 1.0})
    with pytest.raises((RuntimeError, OptimizationInterrupted)) as info:
        case.api.least_squares(failing_residual, x0, args=args, method=method, **kwargs)
    result = _check_raised(kind, info)
    x = _flat(case, result.x)
    assert result.cost == pytest.approx(_cost(x), rel=1e-12)
    assert result.cost < _cost(np.array([0.5, 2.0, 0.0]))
    if not compiled:  # the best point evaluated
        # (numpy's calls include the finite-difference stencils of its Jacobians, which are
        # not candidate points: a little lower, by about the stencil's step)
        assert result.cost <= min(_cost(p) for p in calls) * (
            1 + (1e-12 if case.autodiff else 1e-4)
        )
        assert any(np.array_equal(x, p) for p in calls)


# -- fit: the three helpers ---------------------------------------------------------------------


def test_torch_fit_keeps_the_best_weights() -> None:
    """An error in the model's forward (at its 40th call) carries a FitResult holding the
    best validation weights so far; Ctrl-C an OptimizationInterrupted holding them."""
    torch = pytest.importorskip("torch")
    from dict_minimize.torch_api import fit

    gen = torch.Generator().manual_seed(2)
    x = torch.rand(40, 1, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.sin(3 * x)
    xv = torch.linspace(-1, 1, 25, dtype=torch.float64).reshape(-1, 1)
    for kind in ("error", "ctrl-c"):
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Linear(1, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)
        ).double()
        calls: list[int] = []

        def hook(module: Any, inputs: Any, kind: str = kind, calls: list[int] = calls) -> None:
            calls.append(1)
            if len(calls) == 40:
                raise _failure(kind)

        net.register_forward_pre_hook(hook)
        with pytest.raises((RuntimeError, OptimizationInterrupted)) as info:
            fit(net, x, y, val_data=(xv, torch.sin(3 * xv)), epochs=50, min_grad=0.0)
        out = _check_raised(kind, info)
        val = out.history["val_loss"]
        assert len(val) >= 3 and out.best_epoch == int(np.argmin(val))
        with torch.no_grad():
            best_val = torch.func.functional_call(net, dict(out.params), (xv,))
            mse = float(torch.mean((best_val - torch.sin(3 * xv)) ** 2))
        assert mse == pytest.approx(min(val), rel=1e-9)


def test_jax_and_keras_fit_keep_the_best_weights() -> None:
    """The failure comes from the model's validation pass (Python runs there every epoch)."""
    jax = pytest.importorskip("jax")
    if not jax.config.jax_enable_x64:
        pytest.skip("needs jax_enable_x64")
    jnp = jax.numpy
    from dict_minimize.training.jax import fit

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, (40, 1)))
    xv = jnp.asarray(np.linspace(-1, 1, 25).reshape(-1, 1))
    p0 = {"w1": jnp.asarray(rng.standard_normal((1, 5))), "b1": jnp.zeros(5)}
    p0 |= {"w2": jnp.asarray(rng.standard_normal((5, 1)) / 3), "b2": jnp.zeros(1)}
    passes: list[int] = []

    def apply_fn(p: Any, inputs: Any) -> Any:
        if inputs is xv:  # the validation pass, eager, once per epoch
            passes.append(1)
            if len(passes) == 5:
                raise KeyboardInterrupt
        return jnp.tanh(inputs @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    with pytest.raises(OptimizationInterrupted) as info:
        fit(apply_fn, p0, x, jnp.sin(3 * x), val_data=(xv, jnp.sin(3 * xv)), min_grad=0.0)
    out = _check_raised("ctrl-c", info)
    val = out.history["val_loss"]
    assert len(val) == 4 and out.best_epoch == int(np.argmin(val))
    best = float(jnp.mean((apply_fn(out.params, xv * 1.0) - jnp.sin(3 * xv)) ** 2))
    assert best == pytest.approx(min(val), rel=1e-9)

    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        return
    tf = pytest.importorskip("tensorflow")
    from dict_minimize.training.keras import fit as keras_fit

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(5, "tanh", dtype="float64"),
         keras.layers.Dense(1, dtype="float64")]
    )  # fmt: skip
    xt, xvt = tf.constant(np.asarray(x)), tf.constant(np.asarray(xv))
    calls: list[int] = []
    original = model.stateless_call

    def stateless_call(trainable: Any, non_trainable: Any, inputs: Any, **kw: Any) -> Any:
        if inputs is xvt:
            calls.append(1)
            if len(calls) == 5:
                raise RuntimeError("sensor offline")
        return original(trainable, non_trainable, inputs, **kw)

    model.stateless_call = stateless_call
    with pytest.raises(RuntimeError) as err:
        keras_fit(model, xt, tf.sin(3 * xt), val_data=(xvt, tf.sin(3 * xvt)), min_grad=0.0)
    out = _check_raised("error", err)
    assert len(out.history["val_loss"]) == 4
    assert list(out.params) == [v.path for v in model.trainable_variables]
