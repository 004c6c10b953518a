"""Robust losses for least squares, exactly as ``scipy.optimize.least_squares`` defines them.

With ``z = (f / f_scale)²`` the cost is ``0.5 · f_scale² · Σ ρ(z)``. Solvers see a robust
problem through the same scaling scipy applies (an IRLS step): each Jacobian row is scaled by
``sqrt(w)`` with ``w = max(ρ'(z) + 2 ρ''(z) f² / f_scale², EPS)`` and the gradient is
``Jᵀ (ρ'(z) f)``, so ``JᵀWJ`` is the Gauss-Newton model of the robust cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dict_minimize._errors import InvalidOptionError
from dict_minimize.backends._protocol import Backend

#: scipy's floor on the row weights (a non-convex loss can make ρ' + 2ρ''f² negative).
EPS = float(np.finfo(np.float64).eps)

LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")


@dataclass(frozen=True)
class Weights:
    """What a solver needs from the loss at one residual vector (all on the device).

    Attributes
    ----------
    cost : scalar tensor
        ``0.5 · f_scale² · Σ ρ(z)``.
    rows : tensor or None
        ``sqrt(w)``, the factor of each Jacobian row; None for the linear loss (all ones).
    grad : tensor or None
        ``ρ'(z)``, the factor of each residual in the gradient; None for the linear loss.
    """

    cost: Any
    rows: Any
    grad: Any


class Loss:
    """A named loss bound to a backend and ``f_scale``.

    Parameters
    ----------
    backend : Backend
        Supplies the elementwise functions.
    name : str
        One of :data:`LOSSES`.
    f_scale : float
        Soft margin between inlier and outlier residuals (scipy's ``f_scale``).
    """

    def __init__(self, backend: Backend[Any], name: str, f_scale: float) -> None:
        if name not in LOSSES:
            raise InvalidOptionError(
                f"unknown loss {name!r}; choose one of {', '.join(map(repr, LOSSES))}"
            )
        if not (isinstance(f_scale, int | float) and np.isfinite(f_scale) and f_scale > 0):
            raise InvalidOptionError(f"f_scale must be a positive number, got {f_scale!r}")
        self.backend = backend
        self.name = name
        self.f_scale = float(f_scale)
        self.linear = name == "linear"
        self._rho: Callable[[Any], tuple[Any, Any, Any]] = getattr(self, "_" + name)

    # Each returns (ρ(z), ρ'(z), ρ''(z)) as scipy's functions of the same name.
    def _linear(self, z: Any) -> tuple[Any, Any, Any]:
        return z, None, None

    def _soft_l1(self, z: Any) -> tuple[Any, Any, Any]:
        b = self.backend
        t = z + 1.0
        root = b.sqrt(t)
        return 2.0 * (root - 1.0), 1.0 / root, -0.5 / (t * root)

    def _huber(self, z: Any) -> tuple[Any, Any, Any]:
        b = self.backend
        inlier = z <= 1.0
        # sqrt of max(z, 1) keeps the unused branch finite (no 0**-0.5 at z == 0).
        root = b.sqrt(b.maximum(z, 1.0))
        rho = b.where(inlier, z, 2.0 * root - 1.0)
        d1 = b.where(inlier, 1.0, 1.0 / root)
        d2 = b.where(inlier, 0.0, -0.5 / (root * root * root))
        return rho, d1, d2

    def _cauchy(self, z: Any) -> tuple[Any, Any, Any]:
        t = z + 1.0
        return self.backend.log1p(z), 1.0 / t, -1.0 / (t * t)

    def _arctan(self, z: Any) -> tuple[Any, Any, Any]:
        t = z * z + 1.0
        return self.backend.arctan(z), 1.0 / t, -2.0 * z / (t * t)

    def cost(self, f: Any) -> Any:
        """The cost of residuals ``f``, a device scalar."""
        b = self.backend
        if self.linear:
            return 0.5 * b.sum(f * f)
        c2 = self.f_scale**2
        rho, _, _ = self._rho(f * f / c2)
        return (0.5 * c2) * b.sum(rho)

    def weights(self, f: Any) -> Weights:
        """Cost and the IRLS factors at residuals ``f``."""
        b = self.backend
        if self.linear:
            return Weights(0.5 * b.sum(f * f), None, None)
        c2 = self.f_scale**2
        rho, d1, d2 = self._rho(f * f / c2)
        # scipy: J_scale = sqrt(max(ρ' + 2 ρ''/C² f², EPS)), with ρ'' divided by C² there.
        rows = b.sqrt(b.maximum(d1 + (2.0 / c2) * d2 * f * f, EPS))
        return Weights((0.5 * c2) * b.sum(rho), rows, d1)
