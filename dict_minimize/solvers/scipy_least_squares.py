"""The ``"scipy-trf"``, ``"scipy-dogbox"`` and ``"scipy-lm"`` methods: scipy's host
``least_squares`` on the flat float64 vector, with the Jacobian from the framework.

Each residual evaluation moves the point to the device once and the residuals back once; each
Jacobian is built on the device (per sample in row chunks when batched arguments are
declared) and copied to the host, where scipy needs it whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize as so

from dict_minimize._errors import ObjectiveError
from dict_minimize._option_values import scipy_refusal
from dict_minimize.solvers._problem import ResidualProblem

METHODS = {"scipy-trf": "trf", "scipy-dogbox": "dogbox", "scipy-lm": "lm"}


class NonFiniteJacobian(Exception):
    """Stops scipy's loop at a point where the Jacobian is not finite: its solvers cannot
    step from there (and dogbox's can loop for ever on it)."""


@dataclass
class BestPoint:
    """The lowest finite cost seen and its point (host float64): what an interrupted or
    failed run hands back."""

    x: np.ndarray | None = None
    cost: float = math.inf

    def update(self, x: np.ndarray, cost: float) -> None:
        if cost < self.cost:  # NaN compares False
            self.x, self.cost = np.array(x, dtype=np.float64), cost


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
    best: BestPoint | None = None,
) -> Any:
    """Call ``scipy.optimize.least_squares``; returns scipy's result (x on the host), or None
    when the Jacobian at an accepted point is not finite. ``best`` is kept up to date with
    the best point evaluated."""
    b = problem.backend

    def to_device(x: np.ndarray) -> Any:
        return b.from_numpy(np.asarray(x, dtype=np.float64), problem.device, problem.dtype)

    def fun(x: np.ndarray) -> np.ndarray:
        r, cost = problem.evaluate(to_device(x))
        if best is not None:
            best.update(x, float(b.host(cost)[0]))
        return np.asarray(b.to_numpy(r), dtype=np.float64)

    def jac(x: np.ndarray) -> np.ndarray:
        jacobian = problem.host_jacobian(to_device(x))
        if not np.isfinite(jacobian).all():
            if problem.njev == 1:
                raise ObjectiveError(
                    "the Jacobian of residual_fn is not finite at x0; start from a point where "
                    "the residuals are differentiable"
                )
            raise NonFiniteJacobian
        return jacobian

    kwargs: dict[str, Any] = dict(extra)
    if callback is not None:

        def scipy_callback(intermediate_result: Any) -> None:
            res = intermediate_result
            if callback(np.asarray(res.x), float(res.cost), int(getattr(res, "nit", 0))):
                raise StopIteration

        kwargs["callback"] = scipy_callback
    lb, ub = bounds if bounds is not None else (-np.inf, np.inf)
    try:
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
    except NonFiniteJacobian:
        return None
    except Exception as exc:
        refusal = scipy_refusal(exc, method, extra)
        if refusal is not None:  # raised inside scipy itself (a bad tr_options, say)
            raise refusal from exc
        raise
