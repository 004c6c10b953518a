"""The ``"scipy-trf"``, ``"scipy-dogbox"`` and ``"scipy-lm"`` methods: scipy's host
``least_squares`` on the flat float64 vector, with the Jacobian from the framework.

Each residual evaluation moves the point to the device once and the residuals back once; each
Jacobian is built on the device (per sample in row chunks when batched arguments are
declared) and copied to the host, where scipy needs it whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.optimize as so

from dict_minimize.solvers._problem import ResidualProblem

METHODS = {"scipy-trf": "trf", "scipy-dogbox": "dogbox", "scipy-lm": "lm"}


def run(
    problem: ResidualProblem,
    method: str,
    x0: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray] | None,
    loss: str,
    f_scale: float,
    ftol: float,
    xtol: float,
    gtol: float,
    max_nfev: int | None,
    x_scale: Any,
    extra: dict[str, Any],
    callback: Callable[[np.ndarray, float, int], bool] | None,
) -> Any:
    """Call ``scipy.optimize.least_squares``; returns scipy's result (x on the host)."""
    b = problem.backend

    def to_device(x: np.ndarray) -> Any:
        return b.from_numpy(np.asarray(x, dtype=np.float64), problem.device, problem.dtype)

    def fun(x: np.ndarray) -> np.ndarray:
        r, _ = problem.evaluate(to_device(x))
        return np.asarray(b.to_numpy(r), dtype=np.float64)

    def jac(x: np.ndarray) -> np.ndarray:
        return problem.host_jacobian(to_device(x))

    kwargs: dict[str, Any] = dict(extra)
    if callback is not None:

        def scipy_callback(intermediate_result: Any) -> None:
            res = intermediate_result
            if callback(np.asarray(res.x), float(res.cost), int(getattr(res, "nit", 0))):
                raise StopIteration

        kwargs["callback"] = scipy_callback
    lb, ub = bounds if bounds is not None else (-np.inf, np.inf)
    return so.least_squares(
        fun,
        x0,
        jac=jac,
        bounds=(lb, ub),
        method=METHODS[method],
        ftol=ftol,
        xtol=xtol,
        gtol=gtol,
        x_scale=x_scale,
        loss=loss,
        f_scale=f_scale,
        max_nfev=max_nfev,
        **kwargs,
    )
