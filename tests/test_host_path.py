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


#: Every method that takes the gradient: ``minimize`` hands them ``value_and_grad`` directly.
GRADIENT_METHODS = (
    "CG",
    "BFGS",
    "Newton-CG",
    "L-BFGS-B",
    "TNC",
    "SLSQP",
    "trust-constr",
    "dogleg",
    "trust-ncg",
    "trust-exact",
    "trust-krylov",
)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_scipy_gives_each_call_its_own_x(method: str) -> None:
    """What the host path relies on to take scipy's x as the point without copying it: every
    call gets a fresh array that scipy neither keeps nor changes afterwards."""
    import scipy.optimize as so

    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        seen.append((x, x.copy()))
        d = x - np.arange(4.0)
        return float(d @ d + (d @ d) ** 2), 2 * d * (1 + 2 * (d @ d))

    def hess(x: np.ndarray) -> np.ndarray:
        d = x - np.arange(4.0)
        return (2 + 4 * (d @ d)) * np.eye(4) + 8 * np.outer(d, d)

    second = (
        {"hess": hess}
        if method
        in ("Newton-CG", "dogleg", "trust-ncg", "trust-exact", "trust-krylov", "trust-constr")
        else {}
    )
    res = so.minimize(fun, np.full(4, 3.0), jac=True, method=method, **second)
    assert len(seen) > 3
    for i, (x, at_call) in enumerate(seen):
        np.testing.assert_array_equal(x, at_call, err_msg=f"call {i}'s x changed later")
        assert not np.shares_memory(x, res.x)
        for y, _ in seen[i + 1 :]:
            assert not np.shares_memory(x, y), f"call {i}'s x is reused"


@pytest.mark.parametrize("method", ["L-BFGS-B", "BFGS", "trust-ncg"])
def test_parameters_handed_out_never_change(case: Case, method: str) -> None:
    """The leaves of every evaluation, kept by the objective, still hold that evaluation's
    values after the run (the host path may make them views of scipy's fresh x)."""
    x0, fun = _problem(case)
    kept: list[tuple[Any, np.ndarray]] = []

    def keeping(params: Any) -> Any:
        kept.append((params, np.concatenate([case.numpy(params["b"]).ravel()])))
        return fun(params)

    hessp = None
    if method == "trust-ncg":  # a Hessian-vector product of the quartic, for every backend

        def hessp(params: Any, p: Any) -> Any:
            xp = case.xp
            dw, db = params["layer"]["w"] - 1.5, params["b"] + 0.5
            return {"b": xp.exp(db) * p["b"], "layer": {"w": 12.0 * dw * dw * p["layer"]["w"]}}

    res = minimize(case.backend, keeping, x0, method=method, hessp=hessp, full_output=True)
    assert len(kept) == res.nfev > 3
    for i, (params, at_call) in enumerate(kept):
        np.testing.assert_array_equal(
            case.numpy(params["b"]).ravel(), at_call, err_msg=f"evaluation {i}'s leaves changed"
        )
