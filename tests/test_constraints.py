"""Constraints written on the params dict, against scipy with the same flat constraints.

The constraints below are active at the solution, and their Jacobians (constant, or ``-2 v``)
round exactly like autodiff's, so dict_minimize and scipy on the flat problem must agree to
1e-8 and in their counts, for every method that takes constraints.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.optimize as so

from cases import Case
from dict_minimize import METHODS
from problems import OFFSETS, SHAPES, SIZE, X0, CoupledExp, T

CONSTRAINED = [info.name for info in METHODS.values() if info.constraints]
#: Keep the suite fast: trust-constr needs ~1000 Hessian products at its default gtol, and
#: COBYLA/COBYQA are compared over their first evaluations (they do not converge within them).
OPTIONS = {"trust-constr": {"gtol": 1e-6}, "COBYLA": {"maxiter": 60}, "COBYQA": {"maxfev": 30}}
JAC = pytest.mark.parametrize("jac", [True, False], ids=["user-grad", "autodiff"])


def _index(key: str) -> slice:
    return slice(OFFSETS[key], OFFSETS[key] + int(np.prod(SHAPES[key])))


class Constraints:
    """Three constraints on the params dict, and their flat float64 references for scipy.

    * ``sum(w) + b / 2 == 1/4`` (scalar equality),
    * ``1/2 - v**2 >= 0`` (vector inequality),
    * ``1 - sum(m**2) >= 0`` (scalar inequality).
    """

    def __init__(self, case: Case) -> None:
        self.case = case
        self.like = CoupledExp(case).x0()

    def eq(self, params: Any) -> Any:
        return self.case.xp.sum(params["w"]) + 0.5 * params["b"] - 0.25

    def ineq_v(self, params: Any) -> Any:
        return 0.5 - params["v"] ** 2

    def ineq_m(self, params: Any, radius: float) -> Any:
        return radius - self.case.xp.sum(params["m"] ** 2)

    def dicts(self) -> list[dict[str, Any]]:
        return [
            {"type": "eq", "fun": self.eq},
            {"type": "ineq", "fun": self.ineq_v},
            {"type": "ineq", "fun": self.ineq_m, "args": (1.0,)},
        ]

    # -- flat references ------------------------------------------------------------------
    def _on_flat(self, fn: Any, *args: Any) -> Any:
        def flat_fn(x: np.ndarray) -> np.ndarray:
            params = self.case.split(self.case.tensor(x), self.like)
            return np.atleast_1d(self.case.numpy(fn(params, *args)))

        return flat_fn

    @staticmethod
    def _jac_eq(x: np.ndarray) -> np.ndarray:
        row = np.zeros((1, SIZE))
        row[0, _index("w")] = 1.0
        row[0, _index("b")] = 0.5
        return row

    @staticmethod
    def _jac_v(x: np.ndarray) -> np.ndarray:
        jac = np.zeros((3, SIZE))
        jac[:, _index("v")] = np.diag(-2 * x[_index("v")])
        return jac

    @staticmethod
    def _jac_m(x: np.ndarray) -> np.ndarray:
        jac = np.zeros((1, SIZE))
        jac[0, _index("m")] = -2 * x[_index("m")]
        return jac

    def scipy(self, exact: bool) -> list[so.NonlinearConstraint]:
        """The same constraints for scipy; ``exact``: analytic Jacobians, else "2-point"."""
        specs = [
            (self._on_flat(self.eq), 0.0, self._jac_eq),
            (self._on_flat(self.ineq_v), np.inf, self._jac_v),
            (self._on_flat(self.ineq_m, 1.0), np.inf, self._jac_m),
        ]
        return [
            so.NonlinearConstraint(fun, 0.0, upper, jac=jac if exact else "2-point")
            for fun, upper, jac in specs
        ]


def _flat(case: Case, tree: Any) -> np.ndarray:
    return np.concatenate([case.numpy(tree[k]).reshape(-1) for k in SHAPES])


def _assert_feasible(x: np.ndarray, cons: list[so.NonlinearConstraint], tol: float) -> None:
    for con in cons:
        value = con.fun(x)
        assert np.all(value >= con.lb - tol) and np.all(value <= con.ub + tol), value


@pytest.mark.parametrize("method", CONSTRAINED)
@JAC
def test_matches_scipy(case: Case, method: str, jac: bool) -> None:
    info = METHODS[method.lower()]
    problem, cons = CoupledExp(case), Constraints(case)
    options = OPTIONS.get(method, {})
    kwargs: dict[str, Any] = {}
    ref_kwargs: dict[str, Any] = {}
    if info.gradient and not (jac or case.autodiff):
        ref_jac: bool | str | None = "2-point"
    else:
        ref_jac = True if info.gradient else None
    if info.second_order != "none" and (jac or case.autodiff):
        if jac:
            kwargs["hessp"] = problem.hessp
        ref_kwargs["hessp"] = True
    res = case.api.minimize(
        problem.fun_and_grad if jac else problem.fun,
        problem.x0(),
        method=method,
        jac=jac,
        constraints=cons.dicts(),
        options=options,
        full_output=True,
        **kwargs,
    )
    ref_cons = cons.scipy(exact=case.autodiff)
    ref = problem.reference(
        method, jac=ref_jac, constraints=ref_cons, options=options, **ref_kwargs
    )
    x = _flat(case, res.x)
    np.testing.assert_allclose(x, ref.x, rtol=1e-8, atol=1e-12)
    assert res.nfev == ref.nfev == problem.count.f
    assert res.nit == ref.get("nit", problem.count.iterations)
    assert (res.success, res.status) == (bool(ref.success), int(ref.status))
    if method in ("SLSQP", "trust-constr"):
        assert res.success
        _assert_feasible(x, ref_cons, 1e-6)
        # The constraints matter: the unconstrained minimum (z = D x - t = 0) violates each.
        free = np.linalg.solve(np.eye(SIZE) - np.eye(SIZE, k=-1) / 2, T)
        for con in ref_cons:
            value = con.fun(free)
            assert np.any((value < con.lb - 1e-3) | (value > con.ub + 1e-3))


def test_single_dict_and_scipy_objects_pass_through(case: Case) -> None:
    """A bare dict is one constraint; scipy's own objects act on the flat vector untouched."""
    problem, cons = CoupledExp(case), Constraints(case)
    a = np.zeros((1, SIZE))
    a[0, _index("w")] = 1.0  # sum(w) <= 1, as a LinearConstraint on the flat vector
    linear = so.LinearConstraint(a, -np.inf, 1.0)
    res = case.api.minimize(
        problem.fun_and_grad,
        problem.x0(),
        method="SLSQP",
        constraints=[{"type": "ineq", "fun": cons.ineq_v}, linear],
        full_output=True,
    )
    ref = problem.reference("SLSQP", constraints=[cons.scipy(exact=case.autodiff)[1], linear])
    np.testing.assert_allclose(_flat(case, res.x), ref.x, rtol=1e-8, atol=1e-12)
    assert res.nfev == ref.nfev
    assert case.numpy(res.x["w"]).sum() == pytest.approx(1.0, abs=1e-8)

    single = case.api.minimize(
        problem.fun_and_grad, problem.x0(), method="SLSQP", constraints=cons.dicts()[0]
    )
    assert float(case.numpy(cons.eq(single))) == pytest.approx(0.0, abs=1e-8)


def test_constraint_args(case: Case) -> None:
    """A constraint gets minimize's ``args`` unless it names its own."""
    problem, cons = CoupledExp(case), Constraints(case)
    seen: list[tuple[Any, ...]] = []

    def fun(params: Any, scale: float) -> Any:
        loss, grad = problem.fun_and_grad(params)
        return loss * scale, {k: g * scale for k, g in grad.items()}

    def shared(params: Any, scale: float) -> Any:
        seen.append(("shared", scale))
        return cons.ineq_m(params, 1.0)

    def own(params: Any, radius: float) -> Any:
        seen.append(("own", radius))
        return cons.ineq_m(params, radius)

    constraints = [{"type": "ineq", "fun": shared}, {"type": "ineq", "fun": own, "args": (0.5,)}]
    res = case.api.minimize(fun, problem.x0(), args=(2.0,), method="SLSQP", constraints=constraints)
    assert set(seen) == {("shared", 2.0), ("own", 0.5)}
    assert float(case.numpy(cons.ineq_m(res, 0.5))) == pytest.approx(0.0, abs=1e-7)


def test_nested_params(case: Case) -> None:
    """Constraints see x0's nesting; here a disc constraint on a nested 2-vector."""
    x0 = {"outer": {"p": case.tensor([0.0, 0.0])}, "q": case.tensor(0.0)}

    def fun(params: Any) -> Any:
        p, q = params["outer"]["p"], params["q"]
        d = p - case.tensor([2.0, 0.0])
        return case.xp.sum(d**2) + (q - 1) ** 2, {"outer": {"p": 2 * d}, "q": 2 * (q - 1)}

    con = {"type": "ineq", "fun": lambda params: 1 - case.xp.sum(params["outer"]["p"] ** 2)}
    res = case.api.minimize(fun, x0, method="trust-constr", constraints=con)
    np.testing.assert_allclose(case.numpy(res["outer"]["p"]), [1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(case.numpy(res["q"]), 1.0, atol=1e-6)


def test_x0_and_constraint_inputs_untouched(case: Case) -> None:
    problem, cons = CoupledExp(case), Constraints(case)
    x0 = problem.x0()
    case.api.minimize(problem.fun_and_grad, x0, method="SLSQP", constraints=cons.dicts())
    np.testing.assert_array_equal(_flat(case, x0), X0)
