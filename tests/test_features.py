"""The result object, callbacks, progress and disp, and what survives a failing objective."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
from scipy.optimize import OptimizeResult

from cases import Case
from dict_minimize import METHODS, MinimizeResult, OptimizationInterrupted
from problems import SHAPES, CoupledExp


def _flat(case: Case, tree: Any) -> np.ndarray:
    return np.concatenate([case.numpy(tree[k]).reshape(-1) for k in SHAPES])


class Recorder:
    """Wraps the test problem's objective: records every point and loss, fails on request."""

    def __init__(self, case: Case, fail_at: int | None = None, exc: BaseException | None = None):
        self.case, self.problem = case, CoupledExp(case)
        self.fail_at, self.exc = fail_at, exc
        self.points: list[np.ndarray] = []
        self.losses: list[float] = []

    def __call__(self, params: Any) -> Any:
        if self.fail_at is not None and len(self.points) + 1 == self.fail_at:
            raise self.exc  # type: ignore[misc]
        loss, grad = self.problem.fun_and_grad(params)
        self.points.append(_flat(self.case, params))
        self.losses.append(float(self.case.numpy(loss)))
        return loss, grad

    def best(self) -> tuple[np.ndarray, float]:
        i = int(np.argmin(self.losses))
        return self.points[i], self.losses[i]


@pytest.mark.parametrize("method", ["L-BFGS-B", "Nelder-Mead", "trust-ncg", "trust-exact"])
def test_full_output_fields(case: Case, method: str) -> None:
    info = METHODS[method.lower()]
    problem = CoupledExp(case)
    kwargs: dict[str, Any] = {"hessp": problem.hessp} if info.second_order != "none" else {}
    kwargs["options"] = {"maxiter": 100}  # Nelder-Mead would take ~2000 evaluations
    res = case.api.minimize(
        problem.fun_and_grad, problem.x0(), method=method, full_output=True, **kwargs
    )
    assert isinstance(res, MinimizeResult) and isinstance(res, OptimizeResult)
    assert isinstance(res.x, OrderedDict) and list(res.x) == list(SHAPES)
    x = _flat(case, res.x)
    value, grad = problem.ref_value_and_grad(x)
    assert isinstance(res.fun, float) and res.fun == pytest.approx(value, rel=1e-12, abs=1e-15)
    if info.gradient:
        assert isinstance(res.jac, OrderedDict) and list(res.jac) == list(SHAPES)
        np.testing.assert_allclose(_flat(case, res.jac), grad, rtol=1e-10, atol=1e-12)
    else:
        assert res.jac is None
    for field in ("nit", "nfev", "njev", "status"):
        assert isinstance(res[field], int), field
    assert res.nit > 0 and res.nfev > 0
    assert ("nhev" in res) == (info.second_order != "none")
    if "nhev" in res:
        assert res.nhev > 0
    assert isinstance(res.success, bool) and isinstance(res.message, str) and res.message
    assert res.method == method and res.best_fun <= res.fun
    with pytest.raises(AttributeError):
        _ = res.no_such_field
    plain = case.api.minimize(problem.fun_and_grad, problem.x0(), method=method, **kwargs)
    np.testing.assert_array_equal(_flat(case, plain), x)


@pytest.mark.parametrize("method", ["BFGS", "trust-constr", "COBYLA", "Powell"])
def test_callback_each_iteration(case: Case, method: str) -> None:
    """callback(params_dict) once per iteration, also where scipy passes extra arguments."""
    problem = CoupledExp(case)
    seen: list[np.ndarray] = []
    options = {"maxiter": 40} if method == "COBYLA" else {"maxiter": 5}
    res = case.api.minimize(
        problem.fun_and_grad,
        problem.x0(),
        method=method,
        callback=lambda params: seen.append(_flat(case, params)),
        options=options,
        full_output=True,
    )
    assert len(seen) == res.nit > 0
    assert len({p.tobytes() for p in seen}) > 1  # the iterates move


def test_progress_bar_shows_the_loss(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    problem = CoupledExp(case)
    res = case.api.minimize(
        problem.fun_and_grad,
        problem.x0(),
        options={"progress": True, "maxiter": 50},
        full_output=True,
    )
    err = capsys.readouterr().err
    assert "L-BFGS-B" in err and "loss=" in err
    assert f"{res.nit}/50" in err
    assert f"loss={res.best_fun:.6g}" in err


def test_no_output_by_default(case: Case, capfd: pytest.CaptureFixture[str]) -> None:
    problem = CoupledExp(case)
    case.api.minimize(problem.fun_and_grad, problem.x0(), method="BFGS")
    assert capfd.readouterr().out == ""


def test_disp_passes_through(case: Case, capfd: pytest.CaptureFixture[str]) -> None:
    problem = CoupledExp(case)
    res = case.api.minimize(
        problem.fun_and_grad, problem.x0(), method="BFGS", options={"disp": True}, full_output=True
    )
    out = capfd.readouterr().out
    assert "Optimization terminated successfully" in out
    assert f"Iterations: {res.nit}" in out


@pytest.mark.parametrize("method", ["L-BFGS-B", "Nelder-Mead"])
def test_exception_carries_the_best_point(case: Case, method: str) -> None:
    """An exception from the objective at the k-th evaluation propagates with ``.result``."""
    record = Recorder(case, fail_at=9, exc=ValueError("objective failed"))
    with pytest.raises(ValueError, match="objective failed") as info:
        case.api.minimize(record, record.problem.x0(), method=method)
    res = info.value.result  # type: ignore[attr-defined]
    best_x, best_fun = record.best()
    assert len(record.points) == 8 and res.nfev == 9
    np.testing.assert_array_equal(_flat(case, res.x), best_x)
    assert res.fun == best_fun and best_fun < record.losses[0]
    assert (res.success, res.status) == (False, -3)
    assert any(".result" in note for note in info.value.__notes__)


def test_keyboard_interrupt_carries_the_best_point(case: Case) -> None:
    record = Recorder(case, fail_at=12, exc=KeyboardInterrupt())
    with pytest.raises(OptimizationInterrupted) as info:
        case.api.minimize(record, record.problem.x0(), full_output=True)
    assert isinstance(info.value, KeyboardInterrupt)
    res = info.value.result
    best_x, best_fun = record.best()
    np.testing.assert_array_equal(_flat(case, res.x), best_x)
    assert res.fun == best_fun
    assert (res.success, res.status, res.nfev) == (False, -2, 12)
    assert res.nit > 0 and "interrupted" in res.message


def test_nan_trial_points_are_never_returned(case: Case) -> None:
    """Non-finite losses far from x0 make the line search back off; the answer is finite."""
    problem = CoupledExp(case)
    nan = case.tensor(np.nan)

    def fun(params: Any) -> Any:
        loss, grad = problem.fun_and_grad(params)
        far = float(np.abs(_flat(case, params)).max()) > 1.5
        return (loss + nan, {k: g + nan for k, g in grad.items()}) if far else (loss, grad)

    res = case.api.minimize(fun, problem.x0(), method="BFGS", full_output=True)
    x = _flat(case, res.x)
    assert np.isfinite(x).all() and math.isfinite(res.fun)
    assert res.fun == pytest.approx(problem.ref_value(x), rel=1e-12)


@pytest.mark.parametrize("method", ["L-BFGS-B", "BFGS", "Nelder-Mead", "trust-ncg"])
def test_objective_turning_nan_keeps_the_best_finite_point(case: Case, method: str) -> None:
    """From the 6th evaluation on the loss is NaN: the result is the best finite point."""
    problem = CoupledExp(case)
    losses: list[float] = []
    points: list[np.ndarray] = []
    nan = case.tensor(np.nan)

    def fun(params: Any) -> Any:
        if len(losses) < 5:
            loss, grad = problem.fun_and_grad(params)
        else:  # (not evaluated there: scipy's steps after a NaN can overflow exp)
            loss, grad = nan, {k: v * nan for k, v in params.items()}
        losses.append(float(case.numpy(loss)))
        points.append(_flat(case, params))
        return loss, grad

    kwargs: dict[str, Any] = {"hessp": problem.hessp} if method == "trust-ncg" else {}
    # After the NaNs the trust region shrinks for ever: stop after a few more iterations.
    kwargs["options"] = {"maxiter": 30}
    res = case.api.minimize(fun, problem.x0(), method=method, full_output=True, **kwargs)
    x = _flat(case, res.x)
    assert np.isfinite(x).all() and math.isfinite(res.fun)
    assert not res.success
    best = int(np.nanargmin(losses))
    assert res.best_fun == losses[best]
    assert res.fun == pytest.approx(problem.ref_value(x), rel=1e-12)
    assert any(np.array_equal(x, p) for p in points[:5])


def test_args_forms(case: Case) -> None:
    """``args``: a tuple, a list, or a single non-tuple value (wrapped), as scipy."""
    problem = CoupledExp(case)
    got: list[tuple[Any, ...]] = []

    def fun(params: Any, *args: Any) -> Any:
        got.append(args)
        return problem.fun_and_grad(params)

    for args, want in (((2, 3), (2, 3)), ([4], (4,)), (5, (5,))):
        got.clear()
        case.api.minimize(fun, problem.x0(), args=args, options={"maxiter": 1})
        assert got and all(a == want for a in got)


def test_nested_params_and_gradient(case: Case) -> None:
    x0 = OrderedDict(enc={"w": case.tensor([0.0, 0.0]), "b": case.tensor(0.0)}, s=case.tensor(1.0))

    def fun(params: Any) -> Any:
        w, b, s = params["enc"]["w"], params["enc"]["b"], params["s"]
        dw = w - case.tensor([1.0, -1.0])
        loss = case.xp.sum(dw**2) + (b - 2) ** 2 + s**2
        return loss, {"enc": {"b": 2 * (b - 2), "w": 2 * dw}, "s": 2 * s}  # keys reordered

    res = case.api.minimize(fun, x0, full_output=True)
    assert list(res.x) == ["enc", "s"] and list(res.x["enc"]) == ["w", "b"]
    assert isinstance(res.x["enc"], dict)
    np.testing.assert_allclose(case.numpy(res.x["enc"]["w"]), [1.0, -1.0], atol=1e-6)
    np.testing.assert_allclose(case.numpy(res.x["enc"]["b"]), 2.0, atol=1e-6)
    assert list(res.jac["enc"]) == ["w", "b"]


def test_compiled_derivatives_do_not_keep_the_objective_alive(case: Case) -> None:
    """Derivatives traced or compiled for ``jac=False`` are reused across calls and hold the
    objective weakly: it goes when the caller drops it."""
    import gc
    import weakref

    if not case.traced:
        pytest.skip("only traced backends keep compiled derivatives across calls")

    def loss(p: Any) -> Any:
        return case.xp.sum((p["w"] - 1.0) ** 2)

    res = case.api.minimize(
        loss, {"w": case.tensor([0.0, 2.0, 3.0])}, jac=False, method="trust-krylov"
    )
    np.testing.assert_allclose(case.numpy(res["w"]), np.ones(3), atol=1e-6)
    ref = weakref.ref(loss)
    del loss
    gc.collect()
    assert ref() is None
