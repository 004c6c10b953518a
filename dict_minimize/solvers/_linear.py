"""Solving the damped normal equations ``(Â + μI) ŝ = -ĝ`` for the μ of each trial.

Everything here is in the solver's scaled variables (``Â = d·JᵀWJ·d`` plus the bounded
method's diagonal), and every μ tried at one linearization reuses what was computed for it:

* :class:`DenseSteps` factors ``Â + μI`` by Cholesky per trial. When that fails (``Â`` is
  singular to working precision) or after ``eigh_after`` rejected trials, it decomposes ``Â``
  once; each further μ then costs two matrix-vector products instead of a factorization.
* :class:`CGSteps` is matrix-free: Jacobi-preconditioned conjugate gradients using only
  products with ``Â``, warm-started from the previous μ's solution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dict_minimize.backends._protocol import Backend


class DenseSteps:
    """Steps from the dense scaled matrix ``Â`` (n, n)."""

    def __init__(
        self, backend: Backend[Any], a_hat: Any, g_hat: Any, eye: Any, eigh_after: int | None
    ) -> None:
        self.backend = backend
        self.a_hat = a_hat
        self.neg_g = -g_hat
        self.eye = eye
        self.eigh_after = eigh_after
        self.trials = 0
        self._eig: tuple[Any, Any, Any] | None = None
        # The factorization of Â + μI for the last μ: a second right-hand side reuses it.
        self._factor: tuple[float, Any] | None = None

    def _cholesky_solve(self, mu: float, rhs: Any) -> Any:
        b = self.backend
        if self._factor is None or self._factor[0] != mu:
            self._factor = (mu, b.cholesky_factor(self.a_hat + mu * self.eye))
        return b.factor_solve(self._factor[1], rhs)

    def _decompose(self) -> None:
        b = self.backend
        w, q = b.eigh(self.a_hat)
        # Â is positive semidefinite; rounding can leave tiny negative eigenvalues.
        self._eig = (b.maximum(w, 0.0), q, b.gram(q, self.neg_g))

    def solve(self, mu: float, rhs: Any = None) -> Any:
        """The step for damping ``mu``: ``(Â + μI)⁻¹ rhs``, by default ``rhs = -ĝ``."""
        b = self.backend
        if rhs is not None:  # a second right-hand side at the same μ (geodesic acceleration)
            if self._eig is not None:
                w, q, _ = self._eig
                return b.matmul(q, b.gram(q, rhs) / (w + mu))
            return self._cholesky_solve(mu, rhs)
        if self._eig is None and self.eigh_after is not None and self.trials >= self.eigh_after:
            self._decompose()
        self.trials += 1
        if self._eig is not None:
            w, q, qg = self._eig
            return b.matmul(q, qg / (w + mu))
        return self._cholesky_solve(mu, self.neg_g)

    def fallback(self) -> bool:
        """Switch to the eigendecomposition after a failed factorization; False if in use."""
        if self._eig is not None:
            return False
        self._decompose()
        return True


class CGSteps:
    """Matrix-free steps by preconditioned conjugate gradients.

    Parameters
    ----------
    apply : callable
        ``v -> Â v``.
    diag_hat : tensor or None
        ``diag(Â)`` for the Jacobi preconditioner (None: no preconditioner).
    tol : float
        Stop when ``‖residual‖ ≤ tol·‖ĝ‖``.
    maxiter : int
        Products with ``Â`` per solve at most.
    """

    def __init__(
        self,
        backend: Backend[Any],
        apply: Callable[[Any], Any],
        g_hat: Any,
        diag_hat: Any,
        tol: float,
        maxiter: int,
    ) -> None:
        self.backend = backend
        self.apply = apply
        self.neg_g = -g_hat
        self.diag_hat = diag_hat
        self.tol = tol
        self.maxiter = maxiter
        self.products = 0
        self._x: Any = None

    def solve(self, mu: float, rhs: Any = None) -> Any:
        """The (inexact) step for damping ``mu``: ``(Â + μI)⁻¹ rhs``, by default
        ``rhs = -ĝ`` (warm-started from the previous solution)."""
        b = self.backend
        precond = None if self.diag_hat is None else 1.0 / (self.diag_hat + mu)

        def op(v: Any) -> Any:
            self.products += 1
            return self.apply(v) + mu * v

        warm = rhs is None and self._x is not None
        target_rhs = self.neg_g if rhs is None else rhs
        if warm:
            x = self._x
            res = target_rhs - op(x)
        else:
            x = target_rhs * 0.0
            res = target_rhs
        z = res if precond is None else precond * res
        p = z
        rz = b.dot(res, z)
        target = self.tol * float(b.host(b.norm(target_rhs))[0])
        for _ in range(self.maxiter):
            res_norm, rz_host = b.host(b.norm(res), rz)
            if not res_norm > target or rz_host == 0.0:  # also stops on NaN
                break
            q = op(p)
            alpha = rz / b.dot(p, q)
            x = x + alpha * p
            res = res - alpha * q
            z = res if precond is None else precond * res
            rz_new = b.dot(res, z)
            p = z + (rz_new / rz) * p
            rz = rz_new
        if rhs is None:
            self._x = x
        return x

    def fallback(self) -> bool:
        """No other way to solve without the matrix."""
        return False
