"""Every scipy method through dict_minimize against scipy run directly on the flat problem.

The reference is ``scipy.optimize.minimize`` on the flat float64 vector, driven by the analytic
gradient / Hessian-vector product / Hessian of :mod:`problems` (evaluated in the case's own
framework, so both runs do the same arithmetic). dict_minimize must be transparent: the same
final point to 1e-8 relative, the same value, iteration count and evaluation counts.

With ``jac=False`` on an autodiff backend the derivatives come from autodiff instead (the
numpy backend hands scipy "2-point" finite differences, and the reference does the same). The
problem is built so that autodiff rounds exactly like the analytic formulas, compiled or not
(see problems.py), so the same comparison applies.

Derivative-free methods are compared over their first few hundred evaluations, not to
convergence: transparency does not need more, and COBYLA and COBYQA cost ~1 ms each.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

from cases import Case
from dict_minimize import METHODS, DictMinimizeWarning, MethodInfo
from problems import OFFSETS, SHAPES, SIZE, X0, CoupledExp, x0_inside_bounds

ALL = [info.name for info in METHODS.values()]
BOUNDED = [info.name for info in METHODS.values() if info.bounds]
#: Gradient methods to which numpy_api hands scipy's "2-point" finite differences.
FD_GRADIENT = ["CG", "BFGS", "L-BFGS-B", "TNC", "SLSQP", "trust-constr"]
#: Evaluation budgets of the derivative-free methods (they would take thousands).
CAPPED = {
    "COBYLA": {"maxiter": 80},
    "COBYQA": {"maxfev": 80},
    "Nelder-Mead": {"maxfev": 300},
    "Powell": {"maxfev": 300},
}
JAC = pytest.mark.parametrize("jac", [True, False], ids=["user-grad", "autodiff"])


def _flat(result_x: Any, case: Case) -> np.ndarray:
    """The result dict as one float64 vector, after checking its layout."""
    assert isinstance(result_x, OrderedDict)
    assert list(result_x) == list(SHAPES)
    parts = []
    for key, shape in SHAPES.items():
        value = case.numpy(result_x[key])
        assert value.shape == shape, key
        parts.append(value.reshape(-1))
    return np.concatenate(parts)


def _check_jac_dict(res: Any, ref: Any, case: Case, method: str) -> None:
    """``jac`` is the objective's gradient at ``x`` as a dict (trust-constr calls it ``grad``)."""
    grad = ref.grad if method == "trust-constr" else ref.jac
    np.testing.assert_allclose(_flat(res.jac, case), grad, rtol=1e-8, atol=1e-12)


def run_both(
    case: Case,
    info: MethodInfo,
    jac: bool,
    *,
    bounded: bool = False,
    hessp: bool = True,
    **kwargs: Any,
) -> tuple[Any, Any, CoupledExp]:
    """dict_minimize and the flat scipy reference on the same problem and settings."""
    problem = CoupledExp(case)
    x0_flat = x0_inside_bounds() if bounded else X0
    x0 = problem.x0(flat=x0_flat)
    if info.name in CAPPED and "options" not in kwargs:
        kwargs["options"] = CAPPED[info.name]
    call: dict[str, Any] = dict(method=info.name, full_output=True, jac=jac, **kwargs)
    ref_kw: dict[str, Any] = dict(kwargs)
    if bounded:
        call["lb_dict"], call["ub_dict"] = problem.bounds()
    if not info.gradient:
        ref_jac: bool | str | None = None
    elif jac or case.autodiff:
        ref_jac = True
    else:
        ref_jac = "2-point"
    # Second-order information: the user's hessp with jac=True, autodiff's with jac=False.
    second = info.second_order != "none" and (hessp if jac else case.autodiff)
    if jac and second:
        call["hessp"] = problem.hessp
    if second and info.second_order == "hessp":
        ref_kw["hessp"] = True
    elif second:
        ref_kw["hess"] = True
    res = case.api.minimize(problem.fun_and_grad if jac else problem.fun, x0, **call)
    ref = problem.reference(info.name, jac=ref_jac, bounds=bounded, x0=x0_flat, **ref_kw)
    return res, ref, problem


def assert_same_run(
    case: Case, info: MethodInfo, jac: bool, res: Any, ref: Any, problem: CoupledExp
) -> None:
    """The comparison every test here makes."""
    x = _flat(res.x, case)
    np.testing.assert_allclose(x, ref.x, rtol=1e-8, atol=1e-12 * np.abs(ref.x).max())
    assert res.fun == pytest.approx(float(ref.fun), rel=1e-8, abs=1e-14)
    assert (res.success, res.status) == (bool(ref.success), int(ref.status))
    assert res.nit == ref.get("nit", problem.count.iterations)
    # scipy's nfev counts every call of fun, finite-difference steps included.
    assert res.nfev == problem.count.f == ref.nfev
    exact_grad = info.gradient and (jac or case.autodiff)
    if exact_grad:
        assert res.njev == res.nfev
    elif not info.gradient:
        assert res.njev == 0
    if info.second_order == "none":
        assert "nhev" not in res
    elif info.second_order == "hessp" or jac:
        # One product per call; a Hessian built from the user's hessp costs SIZE products.
        assert res.nhev == problem.count.hp
    else:
        assert res.nhev * SIZE == problem.count.hp
    if info.gradient:
        _check_jac_dict(res, ref, case, info.name)
    else:
        assert res.jac is None


def _skip_unsupported(case: Case, info: MethodInfo, jac: bool) -> None:
    if not jac and not case.autodiff and info.gradient and info.name not in FD_GRADIENT:
        pytest.skip(f"{case.name} has no autodiff for {info.name} (refused: see test_errors)")


@pytest.mark.parametrize("method", ALL)
@JAC
def test_matches_scipy(case: Case, method: str, jac: bool) -> None:
    info = METHODS[method.lower()]
    _skip_unsupported(case, info, jac)
    res, ref, problem = run_both(case, info, jac)
    assert_same_run(case, info, jac, res, ref, problem)


@pytest.mark.parametrize("method", BOUNDED)
@JAC
def test_matches_scipy_with_bounds(case: Case, method: str, jac: bool) -> None:
    info = METHODS[method.lower()]
    _skip_unsupported(case, info, jac)
    res, ref, problem = run_both(case, info, jac, bounded=True)
    assert_same_run(case, info, jac, res, ref, problem)
    lb, ub = problem.bounds()
    for key, bound in lb.items():
        assert (case.numpy(res.x[key]) >= case.numpy(case.tensor(bound)) - 1e-12).all(), key
    for key, bound in ub.items():
        assert (case.numpy(res.x[key]) <= case.numpy(case.tensor(bound)) + 1e-12).all(), key


@pytest.mark.parametrize("method", ["Newton-CG", "trust-constr"])
def test_optional_second_order_without_hessp(case: Case, method: str) -> None:
    """jac=True and no hessp: scipy's own fallback (gradient differences / BFGS), as in scipy."""
    info = METHODS[method.lower()]
    if method == "Newton-CG":
        with pytest.warns(DictMinimizeWarning, match="hessp"):
            res, ref, problem = run_both(case, info, True, hessp=False)
    else:
        res, ref, problem = run_both(case, info, True, hessp=False)
    assert res.nhev == 0
    x = _flat(res.x, case)
    np.testing.assert_allclose(x, ref.x, rtol=1e-8)
    assert (res.nit, res.nfev) == (ref.nit, problem.count.f)


@pytest.mark.parametrize("method", ["L-BFGS-B", "BFGS", "Nelder-Mead", "trust-ncg"])
def test_options_and_tol_reach_scipy(case: Case, method: str) -> None:
    """``tol`` and ``options`` change the run exactly as they change scipy's."""
    info = METHODS[method.lower()]
    jac = not case.autodiff
    options = {"maxiter": 3} if method != "Nelder-Mead" else {"maxiter": 40, "adaptive": True}
    res, ref, problem = run_both(case, info, jac, tol=1e-3, options=options)
    assert_same_run(case, info, jac, res, ref, problem)
    assert res.nit <= options["maxiter"]


def test_offsets_cover_the_vector() -> None:
    """The problem's own layout is consistent (guards the references above)."""
    sizes = [int(np.prod(s)) for s in SHAPES.values()]
    assert [OFFSETS[k] for k in SHAPES] == list(np.cumsum([0, *sizes[:-1]]))
    assert sum(sizes) == SIZE
