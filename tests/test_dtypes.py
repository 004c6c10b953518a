"""Dtypes and devices: the objective runs in x0's dtype on x0's device; the result comes back so.

scipy works in float64 throughout; only the objective's inputs and the result are cast.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

from cases import Case

DTYPES = ["float16", "bfloat16", "float32", "float64"]
#: How close a minimum can be located when the objective computes in each dtype.
ATOL = {"float16": 2e-2, "bfloat16": 1e-1, "float32": 1e-4, "float64": 1e-8}
TARGET = {"w": np.array([[0.5, -1.25], [2.0, 0.75]]), "b": np.array(-0.5), "v": np.array([1.5])}


def _dtype(case: Case, name: str) -> Any:
    if name not in case.dtypes:
        pytest.skip(f"{case.name} has no {name}")
    return case.dtypes[name]


def _x0(case: Case, dtypes: dict[str, str]) -> OrderedDict[str, Any]:
    return OrderedDict((k, case.tensor(np.zeros_like(TARGET[k]), dtypes[k])) for k in TARGET)


def _meta(case: Case, tree: Any, device: bool = True) -> list[tuple[Any, ...]]:
    """(key, shape, dtype[, device]) of each tensor of a flat dict."""
    out = []
    for key, value in tree.items():
        shape, dtype, where = case.backend.leaf_meta(value)
        out.append((key, tuple(shape), dtype, where) if device else (key, tuple(shape), dtype))
    return out


def _recording_objective(case: Case, x0: Any, seen: list[Any], jac: bool) -> Any:
    """``sum((x - target)**2)`` that records the layout of every params dict it is given.

    With ``jac=False`` a compiling backend calls it on symbolic tensors (tracers), which
    carry shapes and dtypes but no device, so only those are recorded.
    """
    targets = {
        k: case.tensor(TARGET[k], case.backend.dtype_name(case.backend.leaf_meta(v)[1]))
        for k, v in x0.items()
    }

    def fun(params: Any) -> Any:
        seen.append(_meta(case, params, device=jac))
        diffs = {k: params[k] - targets[k] for k in targets}
        f64 = case.dtypes["float64"]  # add mixed-dtype terms in float64
        loss = sum(case.backend.cast(case.xp.sum(d * d), f64) for d in diffs.values())
        return (loss, {k: 2 * d for k, d in diffs.items()}) if jac else loss

    return fun


def _run(case: Case, dtypes: dict[str, str], jac: bool) -> tuple[Any, Any, list[Any]]:
    x0 = _x0(case, dtypes)
    before = [case.numpy(v).copy() for v in x0.values()]
    seen: list[Any] = []
    res = case.api.minimize(
        _recording_objective(case, x0, seen, jac), x0, jac=jac, full_output=True
    )
    for value, copy in zip(x0.values(), before):
        np.testing.assert_array_equal(case.numpy(value), copy)  # x0 never modified
    return x0, res, seen


def _check(
    case: Case, x0: Any, res: Any, seen: list[Any], dtypes: dict[str, str], jac: bool
) -> None:
    assert seen and all(meta == _meta(case, x0, device=jac) for meta in seen)
    assert isinstance(res.x, OrderedDict)
    assert _meta(case, res.x) == _meta(case, x0)
    assert isinstance(res.fun, float)
    if res.jac is not None:
        assert _meta(case, res.jac) == _meta(case, x0)
    for key, target in TARGET.items():
        np.testing.assert_allclose(case.numpy(res.x[key]), target, atol=ATOL[dtypes[key]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_user_gradient_in_each_dtype(case: Case, dtype: str) -> None:
    _dtype(case, dtype)
    dtypes = dict.fromkeys(TARGET, dtype)
    x0, res, seen = _run(case, dtypes, jac=True)
    _check(case, x0, res, seen, dtypes, jac=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_autodiff_in_each_dtype(autodiff_case: Case, dtype: str) -> None:
    _dtype(autodiff_case, dtype)
    dtypes = dict.fromkeys(TARGET, dtype)
    x0, res, seen = _run(autodiff_case, dtypes, jac=False)
    _check(autodiff_case, x0, res, seen, dtypes, jac=False)


@pytest.mark.parametrize("jac", [True, False], ids=["user-grad", "autodiff"])
def test_mixed_dtypes(case: Case, jac: bool) -> None:
    """Each tensor keeps its own dtype, in the objective and in the result."""
    if not jac and not case.autodiff:
        pytest.skip(f"{case.name} has no autodiff")
    names = [n for n in DTYPES if n in case.dtypes]
    dtypes = dict(zip(TARGET, ["float64", names[0], "float32"]))
    x0, res, seen = _run(case, dtypes, jac=jac)
    _check(case, x0, res, seen, dtypes, jac)


def test_results_do_not_alias_x0_or_each_other(case: Case) -> None:
    """Writing into the result (NumPy: in place) leaves x0 and a second result alone."""
    dtypes = dict.fromkeys(TARGET, "float64")
    x0 = _x0(case, dtypes)
    fun = _recording_objective(case, x0, [], jac=True)
    first = case.api.minimize(fun, x0)
    second = case.api.minimize(fun, x0)
    if isinstance(first["w"], np.ndarray):
        first["w"][...] = 7.0
    np.testing.assert_array_equal(case.numpy(x0["w"]), 0.0)
    np.testing.assert_allclose(case.numpy(second["w"]), TARGET["w"], atol=1e-8)


# -- PyTorch: requires_grad and nn.Parameter ---------------------------------------------------


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("jac", [True, False], ids=["user-grad", "autodiff"])
def test_torch_requires_grad(requires_grad: bool, jac: bool) -> None:
    """x0 with or without requires_grad: both work, and x0 (values, flag, .grad) is untouched."""
    torch = pytest.importorskip("torch")
    from dict_minimize.torch_api import minimize

    target = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x0 = {
        "a": torch.zeros(3, dtype=torch.float64, requires_grad=requires_grad),
        "p": torch.nn.Parameter(torch.ones(2, dtype=torch.float32), requires_grad=requires_grad),
    }

    def fun(params: Any) -> Any:
        loss = ((params["a"] - target) ** 2).sum() + ((params["p"] - 3) ** 2).sum()
        if not jac:
            return loss
        return loss, {"a": 2 * (params["a"] - target), "p": 2 * (params["p"] - 3)}

    res = minimize(fun, x0, jac=jac)
    torch.testing.assert_close(res["a"], target)
    torch.testing.assert_close(res["p"], torch.full((2,), 3.0))
    assert res["p"].dtype == torch.float32 and not isinstance(res["p"], torch.nn.Parameter)
    assert not res["a"].requires_grad and res["a"].grad_fn is None
    assert torch.equal(x0["a"], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(x0["p"].detach(), torch.ones(2))
    assert x0["a"].requires_grad == requires_grad and x0["a"].grad is None
    assert x0["p"].grad is None
