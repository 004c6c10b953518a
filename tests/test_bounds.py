"""Bounds: every accepted spelling, partial dicts, ±inf, clipping of x0, nesting.

The equivalence tests compare runs bit for bit: spellings of the same bounds must reach scipy
as the same flat vectors. Agreement with scipy itself, for every bounded method, is in
test_minimize_vs_scipy.py.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

from cases import Case
from dict_minimize import METHODS, DictMinimizeWarning
from problems import SHAPES, CoupledExp, flat_bounds_reference, x0_inside_bounds

BOUNDED = [info.name for info in METHODS.values() if info.bounds]
#: A few iterations of each method (the option's name differs between methods).
SHORT = {"TNC": {"maxfun": 10}, "COBYLA": {"maxiter": 20}, "COBYQA": {"maxfev": 20}}


def _flat(case: Case, tree: Any) -> np.ndarray:
    return np.concatenate([case.numpy(tree[k]).reshape(-1) for k in SHAPES])


def _run(case: Case, problem: CoupledExp, **kwargs: Any) -> Any:
    kwargs.setdefault("x0", problem.x0(flat=x0_inside_bounds()))
    x0 = kwargs.pop("x0")
    return case.api.minimize(problem.fun_and_grad, x0, full_output=True, **kwargs)


def test_spellings_are_equivalent(case: Case) -> None:
    """A number, a 0-d tensor, a NumPy array and a full tensor give the same run."""
    problem = CoupledExp(case)
    lb_full, ub_full = flat_bounds_reference()
    full = {
        "lb_dict": {k: case.tensor(v) for k, v in problem.x0(flat=lb_full).items()},
        "ub_dict": {k: case.tensor(v) for k, v in problem.x0(flat=ub_full).items()},
    }
    # The same bounds: v's scalar as a 0-d tensor, b's as a NumPy scalar, w's as a NumPy array.
    lb, ub = problem.bounds()
    mixed = {
        "lb_dict": {**lb, "v": case.tensor(lb["v"])},
        "ub_dict": {**ub, "b": np.float64(ub["b"]), "w": case.numpy(ub["w"])},
    }
    spelled = dict(zip(("lb_dict", "ub_dict"), problem.bounds()))
    runs = [_run(case, problem, **spec) for spec in (full, spelled, mixed)]
    for res in runs[1:]:
        np.testing.assert_array_equal(_flat(case, res.x), _flat(case, runs[0].x))
        assert (res.nit, res.nfev) == (runs[0].nit, runs[0].nfev)


def test_infinite_bounds_are_no_bounds(case: Case) -> None:
    """±inf everywhere is the unbounded run, and methods without bounds accept it."""
    problem = CoupledExp(case)
    free = _run(case, problem, method="BFGS")
    inf = _run(
        case,
        problem,
        method="BFGS",
        lb_dict={"w": -np.inf, "b": float("-inf")},
        ub_dict={"v": case.tensor(np.full(3, np.inf))},
    )
    np.testing.assert_array_equal(_flat(case, inf.x), _flat(case, free.x))
    assert inf.nfev == free.nfev


@pytest.mark.parametrize("side", ["lb", "ub"])
def test_one_side_only(case: Case, side: str) -> None:
    """Only lb_dict or only ub_dict (dict-minimize required both); the other side is free."""
    problem = CoupledExp(case)
    lb, ub = flat_bounds_reference()
    kwargs = {"lb_dict": problem.bounds()[0]} if side == "lb" else {"ub_dict": problem.bounds()[1]}
    res = _run(case, problem, **kwargs)
    free = np.full_like(lb, np.inf)
    flat_bounds = (lb, free) if side == "lb" else (-free, ub)
    ref = problem.reference("L-BFGS-B", x0=x0_inside_bounds(), bounds=flat_bounds)
    np.testing.assert_allclose(_flat(case, res.x), ref.x, rtol=1e-8, atol=1e-12)
    assert res.nfev == ref.nfev
    active = ref.x <= lb + 1e-12 if side == "lb" else ref.x >= ub - 1e-12
    assert active.any(), "the bound must matter for this test to mean anything"


def test_subset_of_keys_leaves_others_free(case: Case) -> None:
    """Keys missing from the bound dicts are unbounded, whatever the other keys do."""
    problem = CoupledExp(case)
    x0 = problem.x0()
    x0["v"] = case.tensor([0.5] * 3)
    options = {"ftol": 0, "gtol": 1e-10}
    res = _run(case, problem, x0=x0, lb_dict={"v": 0.5}, ub_dict={"v": 0.5}, options=options)
    assert np.all(case.numpy(res.x["v"]) == 0.5)  # lb == ub pins a key
    assert res.success
    # The free keys solve the problem with v pinned: the gradient vanishes there.
    grad = res.jac
    for key in ("w", "b", "m"):
        np.testing.assert_allclose(case.numpy(grad[key]), 0.0, atol=1e-5)


@pytest.mark.parametrize("method", BOUNDED)
def test_x0_outside_bounds_is_clipped(case: Case, method: str) -> None:
    """x0 outside its bounds: a warning naming the key, then the run from the clipped point."""
    problem = CoupledExp(case)
    x0 = problem.x0()  # X0 is above w[1, 0]'s and w[1, 1]'s upper bounds, below v[0]'s lower
    lb, ub = problem.bounds()
    fun = problem.fun_and_grad
    kwargs: dict[str, Any] = {"method": method, "options": SHORT.get(method, {"maxiter": 3})}
    if METHODS[method.lower()].second_order != "none":
        kwargs["hessp"] = problem.hessp
    with pytest.warns(DictMinimizeWarning, match=r"outside its bounds at 3 .*x0\['w'\]\[1, 0\]"):
        res = case.api.minimize(fun, x0, lb_dict=lb, ub_dict=ub, full_output=True, **kwargs)
    lbf, ubf = flat_bounds_reference()
    clipped = problem.x0(flat=np.clip(case.numpy(case.flat(x0)), lbf, ubf))
    ref = case.api.minimize(fun, clipped, lb_dict=lb, ub_dict=ub, full_output=True, **kwargs)
    np.testing.assert_array_equal(_flat(case, res.x), _flat(case, ref.x))
    assert res.nfev == ref.nfev


def test_nested_bounds(case: Case) -> None:
    """Bounds follow x0's nesting; a sub-dict may name some of its keys only."""
    x0 = {
        "layer": OrderedDict(w=case.tensor([0.5, 0.5]), b=case.tensor(0.25)),
        "s": case.tensor(0.0),
    }
    target = {"layer": {"w": np.array([-1.0, 1.0]), "b": 1.0}, "s": 5.0}

    def fun(params: Any) -> Any:
        xp = case.xp
        dw = params["layer"]["w"] - case.tensor(target["layer"]["w"])
        db = params["layer"]["b"] - target["layer"]["b"]
        ds = params["s"] - target["s"]
        loss = xp.sum(dw**2) + db**2 + ds**2
        return loss, {"layer": {"w": 2 * dw, "b": 2 * db}, "s": 2 * ds}

    res = case.api.minimize(
        fun, x0, lb_dict={"layer": {"w": 0.0}}, ub_dict={"s": 2.0, "layer": {"b": 0.5}}
    )
    np.testing.assert_allclose(case.numpy(res["layer"]["w"]), [0.0, 1.0], atol=1e-8)
    np.testing.assert_allclose(case.numpy(res["layer"]["b"]), 0.5, atol=1e-8)
    np.testing.assert_allclose(case.numpy(res["s"]), 2.0, atol=1e-8)


def test_bounded_newton_through_trust_constr(case: Case) -> None:
    """Hessian-vector products with bounds: trust-constr reaches L-BFGS-B's bounded minimum."""
    problem = CoupledExp(case)
    lb, ub = problem.bounds()
    x0 = problem.x0(flat=x0_inside_bounds())
    if case.autodiff:
        newton = case.api.minimize(
            problem.fun,
            x0,
            lb_dict=lb,
            ub_dict=ub,
            method="trust-constr",
            jac=False,
            full_output=True,
            options={"gtol": 1e-10, "xtol": 1e-12},
        )
    else:
        newton = case.api.minimize(
            problem.fun_and_grad,
            x0,
            lb_dict=lb,
            ub_dict=ub,
            method="trust-constr",
            hessp=problem.hessp,
            full_output=True,
            options={"gtol": 1e-10, "xtol": 1e-12},
        )
    assert newton.nhev > 0
    lbfgsb = _run(case, problem, lb_dict=lb, ub_dict=ub, options={"ftol": 0, "gtol": 1e-12})
    # trust-constr handles bounds by an interior-point barrier: it stops ~1e-6 inside them.
    np.testing.assert_allclose(_flat(case, newton.x), _flat(case, lbfgsb.x), atol=1e-5)


def test_bounds_are_not_modified(case: Case) -> None:
    problem = CoupledExp(case)
    lb, ub = problem.bounds()
    before = {k: case.numpy(v).copy() for k, v in ub.items() if not isinstance(v, float)}
    _run(case, problem, lb_dict=lb, ub_dict=ub)
    for key, value in before.items():
        np.testing.assert_array_equal(case.numpy(ub[key]), value)
