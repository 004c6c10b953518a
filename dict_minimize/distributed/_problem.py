"""The residual problem of one rank in a data-parallel run.

Each rank's batched args are its shard of the samples. Everything the solvers read from the
problem is made global here, so the loop in :mod:`dict_minimize.solvers.levenberg_marquardt`
runs unchanged and takes every decision from all-reduced values:

* a linearization all-reduces ``JᵀWJ`` (``diag(JᵀWJ)`` in the matrix-free mode), ``JᵀWr``,
  the cost and the squared IRLS residual norm in one buffer;
* a trial evaluation all-reduces its cost, poisoned with NaN when any residual of the shard
  is not finite, so a rejection on one rank is a rejection on all;
* matrix-free products ``JᵀWJ v`` and vector-Jacobian products ``Jᵀu`` are all-reduced
  (``J v`` is per rank: rows stay where their samples are).

The residuals themselves (``Linearization.r``, the result's ``fun``) stay on their rank.
Given bit-identical inputs every rank then computes bit-identical steps, so the parameters
agree to the bit after every iteration (checked by the tests). Local work that raises is held
until the rank's next reduction, which it joins flagged (see :mod:`._collective`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dict_minimize._errors import InvalidOptionError, InvalidParamsError
from dict_minimize._tree import TreeSpec
from dict_minimize.backends._protocol import Backend
from dict_minimize.distributed._collective import Collective
from dict_minimize.solvers._problem import Linearization, ResidualProblem
from dict_minimize.solvers.losses import Loss


class DistributedResidualProblem(ResidualProblem):
    """:class:`~dict_minimize.solvers._problem.ResidualProblem` over sharded samples.

    Parameters
    ----------
    collective : Collective
        The reductions across ranks.
    *others
        As for :class:`~dict_minimize.solvers._problem.ResidualProblem`; ``in_axes`` is
        required (per-sample residuals).

    Attributes
    ----------
    m_total, samples_total : int
        Residuals and samples over all ranks (``m`` and ``samples`` are this rank's).
    """

    def __init__(
        self,
        collective: Collective,
        backend: Backend[Any],
        spec: TreeSpec,
        residual_fn: Callable[..., Any],
        args: tuple[Any, ...],
        device: Any,
        loss: Loss,
        in_axes: Sequence[int | None] | None,
        chunk_size: int | None,
        matrix_free: bool,
    ) -> None:
        if in_axes is None:
            raise InvalidOptionError("a data-parallel run needs per-sample residuals (in_axes)")
        self.collective = collective
        self.m_total = 0
        self.samples_total = 0
        # Local work that raised, held until this rank's next reduction (which it joins).
        self._failure: Exception | None = None
        # What start() needs to join the reductions even if the set-up below fails.
        self.backend, self.spec, self.device, self.n = backend, spec, device, spec.size
        self.dtype = backend.flat_dtype(device)
        try:
            super().__init__(
                backend, spec, residual_fn, args, device, loss, in_axes, chunk_size, matrix_free
            )
        except Exception as exc:  # e.g. malformed args on this rank only: fail all ranks
            self._failure = exc

    # -- reductions --------------------------------------------------------------------------
    def _reduce(self, parts: Sequence[Any] | None, sizes: Sequence[int], op: str = "sum") -> Any:
        failure, self._failure = self._failure, None
        return self.collective.reduce(None if failure else parts, sizes, failure, op)

    def _attempt(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, or None with the exception held for the next reduction."""
        if self._failure is not None:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            self._failure = exc
            return None

    def _summed(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``v -> Σ_ranks fn(v)`` for an ``fn`` returning an (n,) vector."""

        def summed(v: Any) -> Any:
            out = self._attempt(fn, v)
            return self._reduce(None if out is None else [out], [self.n])[0]

        summed.all_reduced = True  # type: ignore[attr-defined]
        return summed

    def _local(self, fn: Callable[[Any], Any], like: Any) -> Callable[[Any], Any]:
        """``fn`` on this rank's rows; zeros like ``like`` (and the error held) if it raises."""

        def local(v: Any) -> Any:
            out = self._attempt(fn, v)
            return like * 0.0 if out is None else out

        return local

    def agreeing(self, callback: Callable[..., bool]) -> Callable[..., bool]:
        """A user callback whose stop request (or exception) every rank acts on together."""

        def agreed(*args: Any) -> bool:
            stop = self._attempt(callback, *args)
            failure, self._failure = self._failure, None
            return self.collective.agree(bool(stop), failure)

        return agreed

    # -- the problem -------------------------------------------------------------------------
    def start(self, flat0: Any) -> tuple[Any, Any]:
        b = self.backend
        # The same parameter layout on every rank first: later buffers are sized by it.
        n_host = b.from_numpy(np.array([self.n, -self.n], np.float64), self.device, self.dtype)
        (n_range,) = self._reduce([n_host], [2], "max")
        n_max, n_neg_min = (float(v) for v in b.to_numpy(n_range))
        if n_max != -n_neg_min:
            raise InvalidParamsError(
                f"x0 has {self.n} elements on rank {self.collective.rank} but between "
                f"{int(-n_neg_min)} and {int(n_max)} across the ranks; every rank must start "
                f"from the same x0"
            )
        # The same x0 on every rank (a model seeded differently per rank would diverge).
        (both,) = self._reduce([b.concat([flat0, -flat0])], [2 * self.n], "max")
        host = np.asarray(b.to_numpy(both), np.float64)
        differs = np.flatnonzero(host[: self.n] != -host[self.n :])
        if differs.size:
            from dict_minimize._bounds import leaf_at

            raise InvalidParamsError(
                f"x0 differs across the {self.collective.world_size} ranks at "
                f"{differs.size} element(s), first at {leaf_at(self.spec, int(differs[0]))}; "
                f"every rank must start from the same x0 (seed the model identically on every "
                f"rank, or broadcast it from rank 0 with torch.distributed.broadcast)"
            )
        started = self._attempt(super().start, flat0)
        r, parts = None, None
        if started is not None:
            r, cost = started
            counts = np.array([self.m, self.samples], np.float64)
            parts = [cost, b.from_numpy(counts, self.device, self.dtype)]
        cost, counts_t = self._reduce(parts, [1, 2])
        self.m_total, self.samples_total = (int(v) for v in b.to_numpy(counts_t))
        return r, b.reshape(cost, ())

    def evaluate(self, flat: Any) -> tuple[Any, Any]:
        b = self.backend
        out = self._attempt(super().evaluate, flat)
        r, parts = None, None
        if out is not None:
            r, cost = out
            parts = [cost + b.sum(r * 0.0)]  # NaN anywhere on this shard: NaN everywhere
        (cost,) = self._reduce(parts, [1])
        return r, b.reshape(cost, ())

    def linearize(self, flat: Any) -> Linearization:
        b, n = self.backend, self.n
        lin = self._attempt(super().linearize, flat)
        parts = None
        if lin is not None:
            big = lin.diag if self.matrix_free else lin.A
            parts = [big, lin.g, lin.cost, lin.fs_norm * lin.fs_norm]
        first = n if self.matrix_free else n * n
        big, g, cost, fs_sq = self._reduce(parts, [first, n, 1, 1])
        cost, fs_norm = b.reshape(cost, ()), b.sqrt(b.reshape(fs_sq, ()))
        if not self.matrix_free:
            a = b.reshape(big, (n, n))
            # J, where the local model keeps it, is this rank's rows: products from it are
            # per rank (J v) or summed (Jᵀu, see products()).
            return Linearization(lin.r, cost, g, b.diagonal(a), a, None, fs_norm, jac=lin.jac)
        out = Linearization(lin.r, cost, g, big, None, None, fs_norm)
        if lin.matvec is not None:
            out.matvec = self._summed(lin.matvec)
        if lin.jvp is not None and lin.vjp is not None:
            out.jvp, out.vjp = self._local(lin.jvp, lin.r), self._summed(lin.vjp)
        return out

    def products(self, flat: Any, lin: Linearization) -> tuple[Any, Any]:
        if lin.jvp is not None and getattr(lin.vjp, "all_reduced", False):
            return lin.jvp, lin.vjp
        fns = self._attempt(super().products, flat, lin)
        if fns is None:  # held: the next reduction (the caller's evaluation) raises everywhere
            lin.jvp, lin.vjp = (lambda v: lin.r * 0.0), self._summed(lambda u: u)
        else:
            lin.jvp, lin.vjp = self._local(fns[0], lin.r), self._summed(fns[1])
        return lin.jvp, lin.vjp

    def host_jacobian(self, flat: Any) -> np.ndarray:
        raise InvalidOptionError("the scipy-* methods cannot run data-parallel")
