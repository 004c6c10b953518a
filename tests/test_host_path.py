"""The host fast path of a ``jac=True`` objective (``backends/_host.py``) against the device path.

Where the parameters live in host memory, evaluations make the leaves from slices of scipy's
point and join the gradient on the host instead of splitting and concatenating a flat tensor on
the device. Both paths must give the same run, bit for bit: same evaluations, same point.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from cases import Case
from dict_minimize import InvalidParamsError, ObjectiveError
from dict_minimize._minimize import minimize


def _problem(case: Case) -> tuple[Any, Any]:
    """A nested x0 with a float32 matrix and a float64 vector, and its objective."""
    xp = case.xp
    x0 = {
        "layer": {"w": case.tensor([[0.5, -1.0], [2.0, 0.25]], "float32")},
        "b": case.tensor([0.1, -0.3, 0.7]),
    }

    def fun(params: Any) -> Any:
        w, b = params["layer"]["w"], params["b"]
        dw, db = w - 1.5, b + 0.5
        quartic = case.backend.cast(xp.sum(dw * dw * dw * dw), case.dtypes["float64"])
        loss = quartic + xp.sum(xp.exp(db) - db)
        return loss, {"b": xp.exp(db) - 1.0, "layer": {"w": 4.0 * dw * dw * dw}}

    return x0, fun


@pytest.mark.parametrize("method", ["L-BFGS-B", "BFGS", "Nelder-Mead"])
def test_same_run_as_the_device_path(
    case: Case, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x0, fun = _problem(case)
    monkeypatch.setattr(case.backend, "host_min_size", 0)  # JAX keeps it for large layouts
    fast = minimize(case.backend, fun, x0, method=method, full_output=True)
    monkeypatch.setattr(case.backend, "host_leaves", lambda spec, device: None)
    device = minimize(case.backend, fun, x0, method=method, full_output=True)
    assert (fast.nit, fast.nfev, fast.njev) == (device.nit, device.nfev, device.njev)
    assert fast.fun == device.fun
    for path in (("b",), ("layer", "w")):
        a, b = fast.x, device.x
        for key in path:
            a, b = a[key], b[key]
        np.testing.assert_array_equal(case.numpy(a), case.numpy(b))
        assert case.backend.leaf_meta(a)[1] == case.backend.leaf_meta(b)[1]
    assert fast.fun < 3.01  # the minimum is 3, at w = 1.5 and b = -0.5


def _breaks_later(case: Case, how: str) -> Any:
    """A quartic objective whose result goes wrong at its fourth evaluation: by then the
    evaluations take the short way of the host path (``Objective._fast_value_and_grad``)."""
    xp, calls = case.xp, [0]

    def fun(params: Any) -> Any:
        calls[0] += 1
        loss = sum(xp.sum((v - 1) ** 4) for v in params.values())
        grad = {k: 4 * (v - 1) ** 3 for k, v in params.items()}
        if calls[0] < 4:
            return loss, grad
        if how == "shape":
            grad["w"] = xp.reshape(grad["w"], (3, 2))
        elif how == "missing":
            del grad["b"]
        elif how == "loss":
            loss = params["w"] * 2.0
        elif how == "pair":
            return [loss, grad, grad]
        return loss, grad

    return fun


@pytest.mark.parametrize(
    "how, error, fragments",
    [
        ("shape", ObjectiveError, ("gradient['w']", "(3, 2)", "(2, 3)")),
        ("missing", InvalidParamsError, ("gradient is missing", "['b']")),
        ("loss", ObjectiveError, ("scalar", "(2, 3)")),
        ("pair", ObjectiveError, ("(loss, grad_dict)", "list")),
    ],
)
def test_later_evaluations_are_checked(
    case: Case, how: str, error: type[Exception], fragments: tuple[str, ...], monkeypatch: Any
) -> None:
    monkeypatch.setattr(case.backend, "host_min_size", 0)
    x0 = {"w": case.tensor(np.full((2, 3), 3.0)), "b": case.tensor([0.5, -2.0])}
    pattern = "(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments)
    with pytest.raises(error, match=pattern) as caught:
        minimize(case.backend, _breaks_later(case, how), x0, method="L-BFGS-B")
    result = caught.value.result  # type: ignore[attr-defined]
    assert result.nfev == 4 and result.best_fun < 2**4 * 6 + 0.5**4 + 3**4  # f(x0)
