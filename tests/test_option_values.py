"""Option values scipy cannot use are refused before scipy sees them, naming the option.

scipy answers ``options={"maxiter": "10"}`` with a TypeError from inside a method, or worse
(``norm=0``: ZeroDivisionError; ``eta=1``: a bare ``Exception``; COBYLA's ``disp=-1``: a
Fortran error). These rules are backend-independent, so they run on NumPy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dict_minimize import METHODS, InvalidOptionError
from dict_minimize.numpy_api import least_squares, minimize


def _fun(params: Any) -> Any:
    x = params["x"]
    return float(np.sum((x - 0.5) ** 2)), {"x": 2 * (x - 0.5)}


def _hessp(params: Any, p: Any) -> Any:
    return {"x": 2 * p["x"]}


def _call(method: str, options: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    if METHODS[method.lower()].second_order != "none":
        kwargs["hessp"] = _hessp
    return minimize(_fun, {"x": np.zeros(3)}, method=method, options=options, **kwargs)


BAD = [
    ("L-BFGS-B", "maxiter", "10", "positive integer"),
    ("L-BFGS-B", "maxcor", 0, "positive integer"),
    ("L-BFGS-B", "ftol", None, "number"),
    ("BFGS", "c1", 1.5, "between 0 and 1"),
    ("BFGS", "c1", 0.95, "must not exceed c2"),
    ("CG", "norm", 0, "positive number"),
    ("CG", "gtol", "small", "number"),
    ("Newton-CG", "xtol", float("nan"), "not NaN"),
    ("TNC", "maxfun", 2.5, "positive integer"),
    ("Nelder-Mead", "xatol", -1.0, "non-negative"),
    ("Nelder-Mead", "adaptive", "yes", "True or False"),
    ("COBYLA", "disp", -1, "True or False"),
    ("COBYLA", "catol", "tight", "number"),
    ("COBYQA", "initial_tr_radius", 0, "positive number"),
    ("COBYQA", "final_tr_radius", 2.0, "must not exceed initial_tr_radius"),
    ("trust-ncg", "eta", 1.0, "[0, 0.25)"),
    ("trust-exact", "subproblem_maxiter", 0, "positive integer"),
    ("trust-constr", "maxiter", -5, "positive integer"),
    ("SLSQP", "ftol", [1e-6], "number"),
]


@pytest.mark.parametrize(("method", "name", "value", "expected"), BAD)
def test_bad_option_value_is_refused(method: str, name: str, value: Any, expected: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        _call(method, {name: value})
    message = str(info.value)
    assert repr(name) in message and repr(method) in message and expected in message


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("TNC", {"eta": -1, "stepmx": 0, "ftol": -1, "maxCGit": -1}),  # scipy's "automatic"
        ("COBYLA", {"disp": 0, "catol": None}),
        ("L-BFGS-B", {"maxiter": np.int64(20), "gtol": np.float32(1e-6)}),
        ("BFGS", {"c1": 1e-4, "c2": 0.5, "maxiter": None}),
        ("trust-exact", {"subproblem_maxiter": None, "eta": 0.1}),
    ],
)
def test_valid_option_values_pass(method: str, options: dict[str, Any]) -> None:
    np.testing.assert_allclose(_call(method, options)["x"], 0.5, atol=1e-4)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("BFGS", {"hess_inv0": np.eye(2)}),
        ("Nelder-Mead", {"initial_simplex": np.ones((2, 7))}),
        ("Powell", {"direc": [1]}),
        ("TNC", {"scale": np.ones((2, 7))}),
        ("trust-constr", {"factorization_method": "QR"}),
    ],
)
def test_scipy_refusing_an_array_option_is_a_package_error(
    method: str, options: dict[str, Any]
) -> None:
    """Options whose checks need the problem (shapes, choices) are scipy's to judge; what it
    raises from inside itself becomes an InvalidOptionError naming the options given."""
    with pytest.raises(InvalidOptionError, match="failed inside its own code") as info:
        _call(method, options)
    assert next(iter(options)) in str(info.value)


def test_options_found_valid_are_remembered_by_type_and_value() -> None:
    """Valid options are checked once per method, name, type and value (``_minimize``): an
    equal value of another type, or the same options for another method, is checked anew."""
    for _ in range(2):
        _call("L-BFGS-B", {"maxiter": 20, "maxls": 20})
        with pytest.raises(InvalidOptionError, match=r"'maxiter'.*positive integer"):
            _call("L-BFGS-B", {"maxiter": 20.0, "maxls": 20})
        with pytest.raises(InvalidOptionError, match=r"'maxls'.*positive integer"):
            _call("L-BFGS-B", {"maxiter": 20, "maxls": 0})
        with pytest.raises(InvalidOptionError, match="has no option"):
            _call("Nelder-Mead", {"maxiter": 20, "maxcor": 5})


def test_option_names_that_are_not_strings() -> None:
    with pytest.raises(InvalidOptionError, match="has no option"):
        _call("L-BFGS-B", {7: 1})
    with pytest.raises(InvalidOptionError, match="has no option"):
        least_squares(lambda p: p["x"], {"x": np.ones(2)}, options={("a", 1): 1})


def test_objective_errors_are_not_taken_for_option_errors() -> None:
    """An error from the user's function keeps its type (and carries the best point)."""

    def failing(params: Any) -> Any:
        raise ZeroDivisionError("the user's own bug")

    with pytest.raises(ZeroDivisionError, match="own bug"):
        minimize(failing, {"x": np.zeros(2)})


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"tr_solver": "lsmr", "tr_options": {"bogus": 1}}, "failed inside"),
        ({"x_scale": {"x": "big"}}, "x_scale['x']"),
        ({"tr_solver": "qr"}, "failed inside"),
    ],
)
def test_least_squares_scipy_options(options: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        least_squares(
            lambda p: p["x"] - 1.0, {"x": np.zeros(2)}, method="scipy-trf", options=options
        )
    assert words in str(info.value)
