"""Derivatives the backends produce, against analytic formulas and finite differences (float64).

Two kinds of check:

* bit-exact agreement of autodiff with the analytic derivatives of the test problem in
  problems.py, the premise on which test_minimize_vs_scipy.py compares whole runs;
* agreement with finite differences (``scipy.optimize.approx_fprime``) for a function with
  transcendental terms and for constraints, at the flat and at the params-dict level.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
from scipy.optimize import approx_fprime, check_grad

from cases import Case
from dict_minimize import METHODS
from dict_minimize._constraints import build_constraints
from dict_minimize._objective import Objective
from dict_minimize._tree import tree_spec
from problems import SIZE, CoupledExp

RNG = np.random.default_rng(7)
POINTS = [RNG.uniform(-2.0, 2.0, SIZE) for _ in range(4)]
# Forward differences with this step are accurate to ~1e-7 relative here.
FD = {"rtol": 2e-6, "atol": 2e-6}
EPS = 1.5e-8


def _fd_jacobian(fn: Any, x: np.ndarray) -> np.ndarray:
    """Forward-difference Jacobian of a vector function (rows: outputs)."""
    return np.atleast_2d(approx_fprime(x, fn, EPS))


def test_autodiff_is_bit_exact_on_the_test_problem(autodiff_case: Case) -> None:
    """Value, gradient, Hessian-vector product and Hessian equal the analytic ones exactly."""
    case = autodiff_case
    problem, backend = CoupledExp(case), case.backend
    value = backend.value_fn(problem.value)
    value_and_grad = backend.value_and_grad_fn(problem.value)
    hvp, hessian = backend.hvp_fn(problem.value), backend.hessian_fn(problem.value)
    for x in POINTS:
        xt, vt = case.tensor(x), case.tensor(RNG.standard_normal(SIZE))
        f, g = value_and_grad(xt)
        assert case.numpy(f) == case.numpy(problem.value(xt)) == case.numpy(value(xt))
        np.testing.assert_array_equal(case.numpy(g), case.numpy(problem.grad(xt)))
        np.testing.assert_array_equal(case.numpy(hvp(xt, vt)), case.numpy(problem.hvp(xt, vt)))
        np.testing.assert_array_equal(case.numpy(hessian(xt)), problem.ref_hess(x))


def test_analytic_derivatives_of_the_test_problem(case: Case) -> None:
    """The formulas in problems.py are right (finite differences), on every backend."""
    problem = CoupledExp(case)
    for x in POINTS:
        assert check_grad(problem.ref_value, lambda y: problem.ref_value_and_grad(y)[1], x) < 1e-5
        hess = problem.ref_hess(x)
        np.testing.assert_allclose(hess, hess.T, rtol=0, atol=0)
        fd = _fd_jacobian(lambda y: problem.ref_value_and_grad(y)[1], x)
        np.testing.assert_allclose(hess, fd, **FD)


class Smooth:
    """``f`` on a nested params dict with sin/log1p/products, and its flat form."""

    def __init__(self, case: Case) -> None:
        self.case = case
        rng = np.random.default_rng(3)
        self.x0 = OrderedDict(
            a=case.tensor(rng.uniform(-1, 1, (2, 3))),
            inner={"s": case.tensor(0.3), "t": case.tensor(rng.uniform(-1, 1, (3,)))},
            unused=case.tensor([1.0, 2.0]),  # the loss does not depend on it
        )
        self.spec, _ = tree_spec(self.x0, case.backend.describe, case.backend.is_leaf)

    def fun(self, params: Any, scale: float) -> Any:
        xp = self.case.xp
        a, s, t = params["a"], params["inner"]["s"], params["inner"]["t"]
        cross = xp.sum(xp.sin(a) * t**2) * s
        return scale * (cross + xp.log1p(xp.sum(a**2) + s**4) + xp.sum(xp.exp(-t) * t))

    def objective(self, **kwargs: Any) -> Objective:
        kwargs.setdefault("fun", self.fun)
        kwargs.setdefault("jac", False)
        kwargs.setdefault("hessp", None)
        return Objective(
            self.case.backend, self.spec, args=(1.5,), device=self.case.device, **kwargs
        )


def test_objective_gradient_hvp_hessian(autodiff_case: Case) -> None:
    """The dict-level objective's autodiff derivatives against finite differences."""
    smooth = Smooth(autodiff_case)
    obj = smooth.objective()
    for x in (RNG.uniform(-1, 1, smooth.spec.size) for _ in range(3)):
        value, grad = obj.value_and_grad(x)
        assert value == pytest.approx(obj.value(x), rel=1e-15)
        np.testing.assert_allclose(grad, approx_fprime(x, obj.value, EPS), **FD)
        assert np.all(grad[-2:] == 0)  # "unused" gets an exact zero gradient
        hess_fd = _fd_jacobian(lambda y: obj.value_and_grad(y)[1], x)
        hess = obj.hess(x)
        np.testing.assert_allclose(hess, hess_fd, **FD)
        np.testing.assert_allclose(hess, hess.T, rtol=1e-12, atol=1e-12)
        p = RNG.standard_normal(smooth.spec.size)
        np.testing.assert_allclose(obj.hessp(x, p), hess @ p, rtol=1e-10, atol=1e-12)
    # Per point: one Hessian and one product; value_and_grad 1 + (n + 1) times, value n + 2.
    n = smooth.spec.size
    assert (obj.nhev, obj.njev, obj.nfev) == (3 * 2, 3 * (n + 2), 3 * (2 * n + 4))


def test_hessian_from_user_hessp(case: Case) -> None:
    """dogleg/trust-exact with a user hessp: the Hessian is assembled column by column."""
    problem = CoupledExp(case)
    spec, _ = tree_spec(problem.x0(), case.backend.describe, case.backend.is_leaf)
    obj = Objective(case.backend, spec, problem.fun_and_grad, (), True, problem.hessp, case.device)
    for x in POINTS[:2]:
        hess = obj.hess(x)
        np.testing.assert_array_equal(hess, problem.ref_hess(x))
        np.testing.assert_allclose(hess, _fd_jacobian(lambda y: obj.value_and_grad(y)[1], x), **FD)
    assert obj.nhev == 2 * SIZE


def test_constant_and_linear_losses(autodiff_case: Case) -> None:
    """Zero Hessians where the loss is linear (no graph for second derivatives)."""
    case = autodiff_case
    x0 = {"a": case.tensor([1.0, -2.0, 0.5])}
    spec, _ = tree_spec(x0, case.backend.describe, case.backend.is_leaf)

    def linear(params: Any) -> Any:
        return case.xp.sum(params["a"] * case.tensor([1.0, 2.0, 3.0]))

    obj = Objective(case.backend, spec, linear, (), False, None, case.device)
    x = np.array([0.3, 0.1, -0.7])
    np.testing.assert_array_equal(obj.value_and_grad(x)[1], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(obj.hessp(x, np.ones(3)), np.zeros(3))
    np.testing.assert_array_equal(obj.hess(x), np.zeros((3, 3)))


def test_constraint_jacobians(autodiff_case: Case) -> None:
    """Jacobians of params-dict constraints (scalar and vector) against finite differences."""
    case = autodiff_case
    smooth = Smooth(case)
    xp = case.xp

    def vector(params: Any, scale: float) -> Any:  # gets minimize's args; (2, 3): 6 rows
        return xp.sin(params["a"]) * params["inner"]["s"] - scale * params["a"] ** 2

    def scalar(params: Any, r: float) -> Any:
        return r - xp.sum(params["inner"]["t"] ** 2) - xp.exp(params["inner"]["s"])

    constraints = [
        {"type": "ineq", "fun": vector},
        {"type": "eq", "fun": scalar, "args": (2.0,)},
    ]
    scipy_cons = build_constraints(constraints, METHODS["slsqp"], smooth.objective())
    for x in (RNG.uniform(-1, 1, smooth.spec.size) for _ in range(3)):
        for con, rows in zip(scipy_cons, (6, 1)):
            jac = con.jac(x)
            assert jac.shape == (rows, smooth.spec.size)
            np.testing.assert_allclose(jac, _fd_jacobian(con.fun, x), **FD)
            np.testing.assert_array_equal(jac[:, -2:], 0.0)
