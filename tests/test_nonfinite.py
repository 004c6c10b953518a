"""Non-finite values at trial points never become the result.

``minimize`` hands scipy a value above every finite one seen (with a zero gradient) where the
loss or its gradient is NaN/Inf, so line searches back off and trust regions shrink; when a
method gives up against such points, the result says so (status -5) and holds the best
finite point. ``least_squares`` rejects such trial points and raises the damping.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from cases import Case
from dict_minimize import METHODS

THRESHOLD = 1.25  # the loss is NaN where any element exceeds it
X0 = [-3.0, -2.0, -1.0]

#: Methods whose strong-Wolfe line search cannot find an acceptable step when the descent
#: direction runs into the non-finite region before the curvature condition holds: they stop
#: there (status -5) instead of going around it, as the others do.
STOP_AT_THE_WALL = {"CG"}


class Pseudohuber:
    """``Σ sqrt(1 + (x - c)²)``: Newton steps from afar overshoot into the NaN region."""

    def __init__(self, case: Case, center: float) -> None:
        self.case, self.center = case, center
        self.points: list[np.ndarray] = []
        self.values: list[float] = []
        self.bad = 0

    def value(self, x: np.ndarray) -> float:
        return float(np.sum(np.sqrt(1 + (x - self.center) ** 2)))

    def fun(self, params: Any) -> Any:
        xp, x = self.case.xp, params["x"]
        d = x - self.center
        s = xp.sqrt(1 + d * d)
        loss, grad = xp.sum(s), d / s
        host = self.case.numpy(x)
        if (host > THRESHOLD).any():
            self.bad += 1
            nan = self.case.tensor(np.nan)
            return loss * nan, {"x": grad * nan}
        self.points.append(host)
        self.values.append(float(self.case.numpy(loss)))
        return loss, {"x": grad}

    def hessp(self, params: Any, p: Any) -> Any:
        d = params["x"] - self.center
        return {"x": p["x"] / (1 + d * d) ** 1.5}


def _run(case: Case, problem: Pseudohuber, method: str) -> Any:
    kwargs: dict[str, Any] = {}
    if METHODS[method.lower()].second_order != "none":
        kwargs["hessp"] = problem.hessp
    limit = "maxfun" if method == "TNC" else "maxiter"
    return case.api.minimize(
        problem.fun,
        {"x": case.tensor(X0)},
        method=method,
        full_output=True,
        options={limit: 1000},
        **kwargs,
    )


def _check_best_finite(case: Case, problem: Pseudohuber, res: Any) -> np.ndarray:
    x = case.numpy(res.x["x"])
    assert np.isfinite(x).all() and (x <= THRESHOLD).all()
    assert math.isfinite(res.fun) and res.fun == problem.value(x)
    if not res.success:
        assert res.status == -5 and "not finite" in res.message
        assert res.fun == min(problem.values)  # the best finite point
    return x


@pytest.mark.parametrize("method", [info.name for info in METHODS.values()])
def test_methods_back_off_from_nonfinite_trials(case: Case, method: str) -> None:
    """The optimum (1, 1, 1) is inside the finite region; every method steps outside it on
    the way, backs off, and (all but CG) reaches the optimum."""
    problem = Pseudohuber(case, center=1.0)
    res = _run(case, problem, method)
    assert problem.bad > 0  # the test means something: non-finite trials happened
    x = _check_best_finite(case, problem, res)
    if method in STOP_AT_THE_WALL:
        assert res.status == -5 and "no finite progress" in res.message
    else:
        tol = 1e-3 if METHODS[method.lower()].gradient else 1e-4 * 10
        assert res.success, res.message
        np.testing.assert_allclose(x, 1.0, atol=tol)
        assert "rejected" in res.message


@pytest.mark.parametrize("method", [info.name for info in METHODS.values()])
def test_no_finite_progress_is_reported(case: Case, method: str) -> None:
    """The optimum (3, 3, 3) lies in the NaN region: the result is the best finite point,
    and a method that gives up says why (status -5)."""
    problem = Pseudohuber(case, center=3.0)
    res = _run(case, problem, method)
    assert problem.bad > 0
    x = _check_best_finite(case, problem, res)
    assert res.fun < problem.value(np.array(X0))  # progress up to the wall
    assert res.fun == min(problem.values) or res.success
    if res.success:  # converged, it claims: at least the message tells of the rejections
        assert "rejected" in res.message
    assert x.max() > THRESHOLD - 0.5  # it went as far as the wall


def test_autodiff_loss_with_nan_region(autodiff_case: Case) -> None:
    """``jac=False``: the framework differentiates a loss that is NaN beyond the threshold
    (compiled on JAX and TensorFlow); L-BFGS-B still reaches the optimum inside."""
    case = autodiff_case
    xp = case.xp
    nan = case.tensor(np.nan)

    def loss(params: Any) -> Any:
        x = params["x"]
        value = xp.sqrt(1 + (x - 1.0) ** 2)
        return xp.sum(xp.where(x > THRESHOLD, nan, value))

    res = case.api.minimize(loss, {"x": case.tensor(X0)}, jac=False, full_output=True)
    assert res.success, res.message
    np.testing.assert_allclose(case.numpy(res.x["x"]), 1.0, atol=1e-5)
    assert "rejected" in res.message


# -- least_squares ------------------------------------------------------------------------------


def _residuals(case: Case, center: float, trials: list[bool]) -> Any:
    """Residuals ``arctan(x - c)`` (flat far away: Gauss-Newton steps from there are long),
    NaN where any x > THRESHOLD;
    ``trials`` records, per eager evaluation, whether it was in the NaN region."""
    xp = case.xp
    nan = case.tensor(np.nan)

    def residual_fn(params: Any) -> Any:
        x = params["x"]
        if case.name not in ("jax", "tensorflow"):  # (their residuals are compiled)
            trials.append(bool((case.numpy(x) > THRESHOLD).any()))
        return xp.where(x > THRESHOLD, nan, xp.arctan(x - center))

    return residual_fn


def _cost(x: np.ndarray, center: float) -> float:
    r = np.arctan(x - center)
    return 0.5 * float(r @ r)


@pytest.mark.parametrize("method", ["lm", "trf", "scipy-trf", "scipy-dogbox", "scipy-lm"])
def test_least_squares_rejects_nonfinite_trials(case: Case, method: str) -> None:
    """Inside: each method steps into the NaN region (the first step from afar is long),
    rejects the step and converges. Outside: the result is the best finite point, and the
    in-framework methods say that no finite progress is possible (status -5)."""
    x0 = {"x": case.tensor(X0)}
    trials: list[bool] = []
    res = case.api.least_squares(_residuals(case, 1.0, trials), x0, method=method)
    assert res.success, res.message
    np.testing.assert_allclose(case.numpy(res.x["x"]), 1.0, atol=1e-6)
    if method in ("lm", "trf", "scipy-lm") and not case.traced:
        assert any(trials)  # (scipy's trf and dogbox start with a short step)

    res = case.api.least_squares(_residuals(case, 3.0, trials), x0, method=method, max_nfev=200)
    x = case.numpy(res.x["x"])
    assert np.isfinite(x).all() and (x <= THRESHOLD).all()
    assert res.cost == pytest.approx(_cost(x, 3.0), rel=1e-12)
    assert res.cost < _cost(np.array(X0), 3.0)
    assert x.max() > THRESHOLD - 0.1  # up to the wall
    # (-5: no finite step left; 0: max_nfev, approaching the wall in ever smaller steps)
    assert res.status in ((-5, 0) if not res.success else (2, 3, 4))


@pytest.mark.parametrize("method", ["lm", "trf"])
def test_least_squares_reports_no_finite_progress(autodiff_case: Case, method: str) -> None:
    """Residuals finite only at x0 itself: every trial is rejected, down to steps below
    xtol; the result is x0, with status -5 and a message that says why. (numpy's central
    differences would find the Jacobian not finite at x0 already.)"""
    case = autodiff_case
    xp = case.xp
    nan = case.tensor(np.nan)

    def residual_fn(params: Any) -> Any:
        x = params["x"]
        return xp.where(x == -3.0, x - 3.0, nan)

    res = case.api.least_squares(residual_fn, {"x": case.tensor([-3.0, -3.0])}, method=method)
    assert (res.status, res.success) == (-5, False)
    assert "not finite" in res.message and "no finite progress" in res.message
    np.testing.assert_array_equal(case.numpy(res.x["x"]), [-3.0, -3.0])
    assert res.cost == 36.0 and res.nit == 0
