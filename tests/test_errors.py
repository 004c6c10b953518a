"""Bad input gets the package's exception, naming the offending key, shape or option.

One test per mistake: each asserts the exception type (a subclass of ValueError or TypeError
defined by dict_minimize) and that the message names what is wrong and how to fix it.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import scipy.optimize as so

from cases import Case
from dict_minimize import (
    METHODS,
    DictMinimizeError,
    InvalidBoundsError,
    InvalidDtypeError,
    InvalidOptionError,
    InvalidParamsError,
    ObjectiveError,
)
from problems import CoupledExp

UNBOUNDED = [info.name for info in METHODS.values() if not info.bounds]
UNCONSTRAINED = [info.name for info in METHODS.values() if not info.constraints]


def x0_of(case: Case) -> OrderedDict[str, Any]:
    return OrderedDict(w=case.tensor(np.ones((2, 3))), b=case.tensor(0.5))


def quadratic(case: Case) -> Any:
    """``sum((x - 1)**2)`` over every tensor, returning (loss, grad_dict)."""

    def fun(params: Any) -> Any:
        xp = case.xp
        loss = sum(xp.sum((v - 1) ** 2) for v in params.values())
        return loss, {k: 2 * (v - 1) for k, v in params.items()}

    return fun


def valid_call(case: Case, method: str) -> tuple[Any, Any, dict[str, Any]]:
    """``fun, x0, kwargs`` that ``method`` would accept (with hessp where it needs one)."""
    problem = CoupledExp(case)
    kwargs: dict[str, Any] = {"method": method}
    if METHODS[method.lower()].second_order != "none":
        kwargs["hessp"] = problem.hessp
    return problem.fun_and_grad, problem.x0(), kwargs


def raises(exc: type[Exception], *fragments: str) -> Any:
    """``pytest.raises`` that also requires every fragment (literally) in the message."""
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


# -- x0 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [[1.0, 2.0], "w", None, 3.0], ids=["list", "str", "None", "float"])
def test_x0_not_a_mapping(case: Case, bad: Any) -> None:
    with raises(InvalidParamsError, "x0 must be a mapping", type(bad).__name__):
        case.api.minimize(quadratic(case), bad)


def test_x0_a_bare_tensor(case: Case) -> None:
    with raises(InvalidParamsError, "x0 must be a mapping", "{'x': tensor}"):
        case.api.minimize(quadratic(case), case.tensor([1.0, 2.0]))


def test_x0_empty(case: Case) -> None:
    with raises(InvalidParamsError, "x0 is empty", "nothing to optimize"):
        case.api.minimize(quadratic(case), OrderedDict())


def test_x0_nested_empty(case: Case) -> None:
    with raises(InvalidParamsError, "empty", "x0['layer']"):
        case.api.minimize(quadratic(case), {"w": case.tensor(1.0), "layer": {}})


def test_x0_only_zero_size_tensors(case: Case) -> None:
    with raises(InvalidParamsError, "zero elements"):
        case.api.minimize(quadratic(case), {"w": case.tensor(np.zeros((0, 3)))})


def test_x0_value_not_a_tensor(case: Case) -> None:
    with raises(InvalidParamsError, "x0['b']", "list", case.backend.name):
        case.api.minimize(quadratic(case), {"w": case.tensor(1.0), "b": [1.0]})


@pytest.mark.parametrize("kind", ["int64", "bool", "complex128"])
def test_x0_non_floating(case: Case, kind: str) -> None:
    dtype = getattr(case.xp, kind, None) or getattr(case.xp, kind + "_")
    bad = case.backend.from_numpy(np.array([1.0, 0.0]), case.device, dtype)
    x0 = OrderedDict(w=case.tensor([1.0, 2.0]), n=bad)
    with raises(InvalidDtypeError, "x0['n']", kind, "floating point", "cast"):
        case.api.minimize(quadratic(case), x0)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_x0_not_finite(case: Case, value: float) -> None:
    w = np.ones((2, 3))
    w[1, 2] = value
    x0 = OrderedDict(b=case.tensor(0.0), w=case.tensor(w))
    with raises(InvalidParamsError, "x0['w'][1, 2]", str(value), "finite"):
        case.api.minimize(quadratic(case), x0)


# -- what the objective returns ----------------------------------------------------------------


def _with_grad(case: Case, edit: Any) -> Any:
    def fun(params: Any) -> Any:
        loss, grad = quadratic(case)(params)
        return loss, edit(grad)

    return fun


def test_grad_missing_key(case: Case) -> None:
    fun = _with_grad(case, lambda g: {"w": g["w"]})
    with raises(InvalidParamsError, "gradient is missing", "['b']"):
        case.api.minimize(fun, x0_of(case))


def test_grad_extra_key(case: Case) -> None:
    fun = _with_grad(case, lambda g: {**g, "bias": g["b"]})
    with raises(InvalidParamsError, "'bias'", "x0 does not have"):
        case.api.minimize(fun, x0_of(case))


def test_grad_wrong_shape(case: Case) -> None:
    fun = _with_grad(case, lambda g: {"w": case.xp.reshape(g["w"], (3, 2)), "b": g["b"]})
    with raises(ObjectiveError, "gradient['w']", "(3, 2)", "(2, 3)"):
        case.api.minimize(fun, x0_of(case))


def test_grad_not_a_tensor(case: Case) -> None:
    fun = _with_grad(case, lambda g: {"w": g["w"], "b": "zero"})
    with raises(ObjectiveError, "gradient['b']", "str", "shape ()"):
        case.api.minimize(fun, x0_of(case))


def test_jac_true_but_fun_returns_only_the_loss(case: Case) -> None:
    def fun(params: Any) -> Any:
        return quadratic(case)(params)[0]

    with raises(ObjectiveError, "jac=True", "(loss, grad_dict)", "jac=False"):
        case.api.minimize(fun, x0_of(case))


def test_fun_returns_non_scalar(case: Case) -> None:
    def fun(params: Any) -> Any:
        return params["w"] ** 2, {k: 2 * v for k, v in params.items()}

    with raises(ObjectiveError, "scalar", "(2, 3)"):
        case.api.minimize(fun, x0_of(case))


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_fun_not_finite_at_x0(case: Case, value: float) -> None:
    def fun(params: Any) -> Any:
        loss, grad = quadratic(case)(params)
        return loss * value, grad

    with raises(ObjectiveError, str(value), "at x0", "finite"):
        case.api.minimize(fun, x0_of(case))


def test_grad_not_finite_at_x0(case: Case) -> None:
    fun = _with_grad(case, lambda g: {"w": g["w"] + np.inf, "b": g["b"]})
    with raises(ObjectiveError, "gradient is not finite at x0", "x0['w']"):
        case.api.minimize(fun, x0_of(case))


# -- bounds ---------------------------------------------------------------------------------------


def test_lb_above_ub(case: Case) -> None:
    ub = np.full((2, 3), 2.0)
    ub[0, 1] = -1.0
    with raises(InvalidBoundsError, "lower bound above upper bound", "x0['w'][0, 1]"):
        case.api.minimize(
            quadratic(case), x0_of(case), lb_dict={"w": 0.0}, ub_dict={"w": case.tensor(ub)}
        )


def test_bounds_unknown_key(case: Case) -> None:
    with raises(InvalidBoundsError, "lb_dict", "'bias'", "x0 does not have"):
        case.api.minimize(quadratic(case), x0_of(case), lb_dict={"w": 0.0, "bias": 0.0})


def test_bounds_wrong_shape(case: Case) -> None:
    with raises(InvalidBoundsError, "ub_dict['w']", "(3,)", "(2, 3)"):
        case.api.minimize(quadratic(case), x0_of(case), ub_dict={"w": case.tensor([1.0] * 3)})


def test_bounds_nan(case: Case) -> None:
    with raises(InvalidBoundsError, "lb_dict['b']", "NaN", "-inf"):
        case.api.minimize(quadratic(case), x0_of(case), lb_dict={"b": float("nan")})


def test_bounds_not_a_number(case: Case) -> None:
    with raises(InvalidBoundsError, "ub_dict['b']", "str"):
        case.api.minimize(quadratic(case), x0_of(case), ub_dict={"b": "1"})


@pytest.mark.parametrize("method", UNBOUNDED)
def test_bounds_with_a_method_without_bounds(case: Case, method: str) -> None:
    fun, x0, kwargs = valid_call(case, method)
    with raises(InvalidBoundsError, repr(method), "cannot handle bounds", "L-BFGS-B", "TNC"):
        case.api.minimize(fun, x0, lb_dict={"w": 0.0}, **kwargs)


# -- method, options and the call ----------------------------------------------------------------


def test_unknown_method(case: Case) -> None:
    with raises(InvalidOptionError, "'LBFGS'", "L-BFGS-B", "trust-krylov"):
        case.api.minimize(quadratic(case), x0_of(case), method="LBFGS")


def test_unknown_option(case: Case) -> None:
    with raises(InvalidOptionError, "'L-BFGS-B'", "'max_iter'", "maxiter"):
        case.api.minimize(quadratic(case), x0_of(case), options={"max_iter": 5})


def test_option_of_another_method(case: Case) -> None:
    with raises(InvalidOptionError, "'BFGS'", "'maxcor'"):
        case.api.minimize(quadratic(case), x0_of(case), method="BFGS", options={"maxcor": 5})


def test_options_not_a_dict(case: Case) -> None:
    with raises(InvalidOptionError, "options must be a dict", "list"):
        case.api.minimize(quadratic(case), x0_of(case), options=[("maxiter", 5)])


@pytest.mark.parametrize("tol", [0.0, -1e-6, "small"])
def test_bad_tol(case: Case, tol: Any) -> None:
    with raises(InvalidOptionError, "tol", repr(tol)):
        case.api.minimize(quadratic(case), x0_of(case), tol=tol)


def test_jac_not_bool(case: Case) -> None:
    with raises(InvalidOptionError, "jac must be True", "'2-point'"):
        case.api.minimize(quadratic(case), x0_of(case), jac="2-point")


def test_fun_not_callable(case: Case) -> None:
    with raises(InvalidOptionError, "fun must be callable", "dict"):
        case.api.minimize({}, x0_of(case))


def test_callback_not_callable(case: Case) -> None:
    with raises(InvalidOptionError, "callback must be callable"):
        case.api.minimize(quadratic(case), x0_of(case), callback=1)


@pytest.mark.parametrize("method", ["dogleg", "trust-ncg", "trust-exact", "trust-krylov"])
def test_second_order_method_without_hessp(case: Case, method: str) -> None:
    """jac=True and no hessp: nothing supplies the second derivatives the method requires."""
    with raises(InvalidOptionError, repr(method), "hessp"):
        case.api.minimize(quadratic(case), x0_of(case), method=method)


@pytest.mark.parametrize("method", ["Newton-CG", "dogleg", "trust-ncg"])
def test_numpy_second_order_without_autodiff(case: Case, method: str) -> None:
    """numpy_api with jac=False has neither an exact gradient nor Hessian products."""
    if case.autodiff:
        pytest.skip("autodiff supplies them")
    problem = CoupledExp(case)
    with raises(InvalidOptionError, repr(method), "numpy_api has no autodiff", "jac=True"):
        case.api.minimize(problem.fun, problem.x0(), method=method, jac=False)


def test_hessp_with_a_first_order_method(case: Case) -> None:
    problem = CoupledExp(case)
    with raises(InvalidOptionError, "'BFGS'", "does not use Hessian", "drop hessp"):
        case.api.minimize(problem.fun_and_grad, problem.x0(), method="BFGS", hessp=problem.hessp)


def test_hessp_not_callable(case: Case) -> None:
    with raises(InvalidOptionError, "hessp must be callable"):
        case.api.minimize(quadratic(case), x0_of(case), method="trust-ncg", hessp={})


def test_hessp_returns_wrong_shape(case: Case) -> None:
    problem = CoupledExp(case)

    def hessp(params: Any, p: Any) -> Any:
        out = dict(problem.hessp(params, p))
        out["v"] = out["v"][:2]
        return out

    with raises(ObjectiveError, "hessp result['v']", "(2,)", "(3,)"):
        case.api.minimize(problem.fun_and_grad, problem.x0(), method="trust-ncg", hessp=hessp)


# -- constraints ----------------------------------------------------------------------------------


def _constraint(case: Case) -> dict[str, Any]:
    return {"type": "ineq", "fun": lambda params: 4 - case.xp.sum(params["w"])}


@pytest.mark.parametrize("method", UNCONSTRAINED)
def test_constraints_with_a_method_without_them(case: Case, method: str) -> None:
    fun, x0, kwargs = valid_call(case, method)
    with raises(InvalidOptionError, repr(method), "cannot handle constraints", "SLSQP", "COBYQA"):
        case.api.minimize(fun, x0, constraints=[_constraint(case)], **kwargs)


def test_scipy_constraint_with_a_method_without_them(case: Case) -> None:
    con = so.LinearConstraint(np.ones((1, 7)), -np.inf, 4.0)
    with raises(InvalidOptionError, "'L-BFGS-B'", "cannot handle constraints"):
        case.api.minimize(quadratic(case), x0_of(case), constraints=con)


def test_constraint_bad_type(case: Case) -> None:
    con = {**_constraint(case), "type": "le"}
    with raises(InvalidOptionError, "constraints[0]['type']", "'eq' or 'ineq'", "'le'"):
        case.api.minimize(quadratic(case), x0_of(case), method="SLSQP", constraints=[con])


def test_constraint_unknown_key(case: Case) -> None:
    con = {**_constraint(case), "jac": None}
    with raises(InvalidOptionError, "constraints[0]", "'jac'", "type, fun, args"):
        case.api.minimize(quadratic(case), x0_of(case), method="SLSQP", constraints=[con])


def test_constraint_not_a_dict(case: Case) -> None:
    with raises(InvalidOptionError, "constraints[1]", "str"):
        case.api.minimize(
            quadratic(case), x0_of(case), method="SLSQP", constraints=[_constraint(case), "w<4"]
        )


def test_constraint_fun_not_callable(case: Case) -> None:
    with raises(InvalidOptionError, "constraints[0]['fun'] must be callable"):
        case.api.minimize(
            quadratic(case), x0_of(case), method="SLSQP", constraints={"type": "eq", "fun": 1}
        )


def test_constraint_returns_a_python_number(case: Case) -> None:
    con = {"type": "eq", "fun": lambda params: 1.0}
    with raises(ObjectiveError, "constraints[0]['fun']", "float", case.backend.name):
        case.api.minimize(quadratic(case), x0_of(case), method="SLSQP", constraints=con)


def test_every_error_is_a_builtin_error() -> None:
    """``except ValueError`` / ``except TypeError`` keep working for callers."""
    for exc in (InvalidParamsError, InvalidBoundsError, InvalidOptionError, ObjectiveError):
        assert issubclass(exc, ValueError) and issubclass(exc, DictMinimizeError)
    assert issubclass(InvalidDtypeError, TypeError)
    assert issubclass(InvalidDtypeError, DictMinimizeError)
