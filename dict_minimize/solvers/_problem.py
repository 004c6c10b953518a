"""The user's residual function as the solvers see it: flat device vectors in, the cost and
the Gauss-Newton normal equations out.

Two ways to get the Jacobian, both vectorized by the backend:

* *general*: ``r(flat)`` as a whole, by forward mode when residuals outnumber parameters and
  by reverse mode otherwise (:meth:`Backend.jacfwd_fn`, :meth:`Backend.jacobian_fn`);
* *per sample*: the user declares which arguments hold independent samples (``in_axes``);
  Jacobian rows come from vmapped reverse mode over row chunks of those arguments, and only
  ``JᵀWJ``, ``JᵀWr`` and ``diag(JᵀWJ)`` are kept, so the full J never exists.

Above a parameter count the dense ``JᵀWJ`` is not formed at all (matrix-free): products with
it come from one Jacobian-vector and one vector-Jacobian product.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dict_minimize._errors import InvalidOptionError, ObjectiveError
from dict_minimize._tree import TreeSpec
from dict_minimize.backends._protocol import FLOATING, Backend
from dict_minimize.solvers.losses import Loss

#: Default bound on the elements of one Jacobian chunk (256 MiB in float64).
CHUNK_ELEMENTS = 1 << 25


@dataclass
class Linearization:
    """The Gauss-Newton model at one point; every field stays on the device.

    Attributes
    ----------
    r : tensor
        Residuals (m,).
    cost : scalar tensor
        The (robust) cost.
    g : tensor
        Gradient of the cost, ``Jᵀ (ρ' r)`` (n,).
    diag : tensor or None
        ``diag(JᵀWJ)`` (n,), None when it cannot be had without J (matrix-free, general mode).
    A : tensor or None
        ``JᵀWJ`` (n, n), None in matrix-free mode.
    matvec : callable or None
        ``v -> JᵀWJ v`` in matrix-free mode.
    fs_norm : scalar tensor
        Norm of the IRLS-scaled residual (``‖r‖`` for the linear loss), for MINPACK's gtol.
    jac : tensor or None
        The whole J (m, n) in general mode, where it exists anyway.
    jvp, vjp : callable or None
        ``v -> J v`` and ``u -> Jᵀ u``, made on demand by :meth:`ResidualProblem.products`.
    """

    r: Any
    cost: Any
    g: Any
    diag: Any
    A: Any
    matvec: Callable[[Any], Any] | None
    fs_norm: Any
    jac: Any = None
    jvp: Callable[[Any], Any] | None = None
    vjp: Callable[[Any], Any] | None = None


class ResidualProblem:
    """Evaluate and linearize ``residual_fn`` at flat points on the device.

    Parameters
    ----------
    backend : Backend
        The framework adapter.
    spec : TreeSpec
        Layout of x0.
    residual_fn : callable
        ``residual_fn(params, *args)`` returning a tensor of residuals (any shape).
    args : tuple
        Extra arguments.
    device : object
        Where x0 lives.
    loss : Loss
        The (robust) loss.
    in_axes : sequence of int or None, optional
        For each of ``args``, the axis along which it holds samples (None: shared). None
        selects the general mode.
    chunk_size : int, optional
        Samples per Jacobian chunk in per-sample mode (default: chunks of at most
        :data:`CHUNK_ELEMENTS` Jacobian elements).
    matrix_free : bool
        Never form ``JᵀWJ``; use Jacobian-vector products.
    """

    def __init__(
        self,
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
        self.backend = backend
        self.spec = spec
        self.residual_fn = residual_fn
        self.args = args
        self.device = device
        self.loss = loss
        self.in_axes = None if in_axes is None else tuple(in_axes)
        self.chunk_size = chunk_size
        self.matrix_free = matrix_free
        self.dtype = backend.flat_dtype(device)
        self.n = spec.size
        self.m = 0
        self.samples = 0
        self.chunk_rows = 0
        self.nfev = 0
        self.njev = 0
        self._jac: Any = None
        self._ps_jac: Any = None
        self._products: Any = None
        if self.in_axes is not None:
            self.samples = self._check_batched()

    # -- the residual function ------------------------------------------------------------
    def _params(self, flat: Any) -> Any:
        return self.spec.unflatten(self.backend.unravel(flat, self.spec))

    def _as_flat(self, out: Any) -> Any:
        """Check what residual_fn returned and ravel it in the flat dtype."""
        backend = self.backend
        if not backend.is_leaf(out):
            raise ObjectiveError(
                f"residual_fn must return a {backend.name} tensor of residuals, got "
                f"{type(out).__name__}"
            )
        shape, dtype, _ = backend.leaf_meta(out)
        if backend.dtype_name(dtype) not in FLOATING:
            raise ObjectiveError(
                f"residual_fn returned dtype {backend.dtype_name(dtype)}; residuals must be "
                f"floating point (compute them from params)"
            )
        return backend.cast(backend.reshape(out, (math.prod(shape),)), self.dtype)

    def residuals(self, flat: Any) -> Any:
        """``residual_fn`` at a flat point, raveled (differentiable for autodiff builders)."""
        return self._as_flat(self.residual_fn(self._params(flat), *self.args))

    def _chunk_args(self, start: int, stop: int) -> tuple[Any, ...]:
        return tuple(
            arg if axis is None else self.backend.slice_axis(arg, start, stop, axis)
            for arg, axis in zip(self.args, self.in_axes or ())
        )

    def _chunks(self) -> list[tuple[int, int]]:
        rows = self.chunk_rows
        return [(s, min(s + rows, self.samples)) for s in range(0, self.samples, rows)]

    # -- set-up at x0 -------------------------------------------------------------------------
    def _check_batched(self) -> int:
        in_axes = self.in_axes or ()
        if len(in_axes) != len(self.args):
            raise InvalidOptionError(
                f"options['in_axes'] has {len(in_axes)} entries but there are "
                f"{len(self.args)} args; give one axis (or None) per argument"
            )
        sizes: list[tuple[int, int]] = []
        for i, (arg, axis) in enumerate(zip(self.args, in_axes)):
            if axis is None:
                continue
            if not self.backend.is_leaf(arg):
                raise InvalidOptionError(
                    f"args[{i}] is declared batched but is a {type(arg).__name__}, not a "
                    f"{self.backend.name} tensor"
                )
            shape = self.backend.leaf_meta(arg)[0]
            if not (isinstance(axis, int) and 0 <= axis < len(shape)):
                raise InvalidOptionError(
                    f"args[{i}] has shape {tuple(shape)}; batch axis {axis!r} is not one of its "
                    f"axes"
                )
            sizes.append((i, int(shape[axis])))
        if not sizes:
            raise InvalidOptionError("options['in_axes'] declares no batched argument")
        counts = {size for _, size in sizes}
        if len(counts) > 1:
            listed = ", ".join(f"args[{i}]: {size}" for i, size in sizes)
            raise InvalidOptionError(f"batched args hold different numbers of samples ({listed})")
        return sizes[0][1]

    def start(self, flat0: Any) -> tuple[Any, Any]:
        """Evaluate at x0, check the residuals, and build the Jacobian functions."""
        backend = self.backend
        r = self._evaluate_raw(flat0)
        self.m = int(backend.leaf_meta(r)[0][0])
        if self.m == 0:
            raise ObjectiveError("residual_fn returned no residuals at x0")
        host = backend.to_numpy(r)
        bad = np.flatnonzero(~np.isfinite(host))
        if bad.size:
            raise ObjectiveError(
                f"residual_fn is not finite at x0: {bad.size} of {self.m} residual(s), first at "
                f"flat index {int(bad[0])} = {host[bad[0]]}; start from a point where every "
                f"residual is finite"
            )
        if self.in_axes is not None:
            if self.m % self.samples:
                raise ObjectiveError(
                    f"residual_fn returned {self.m} residuals for {self.samples} samples; with "
                    f"batched args it must return the residuals of each sample along axis 0"
                )
            k = self.m // self.samples
            if self.chunk_size is None:
                self.chunk_rows = max(1, CHUNK_ELEMENTS // max(1, k * self.n))
            else:
                self.chunk_rows = self.chunk_size
            self._ps_jac = backend.per_sample_jacobian_fn(self._leaf_residuals, self.in_axes)
        elif not self.matrix_free:
            builder = backend.jacfwd_fn if self.m >= self.n else backend.jacobian_fn
            self._jac = builder(self.residuals)
        return r, self.loss.cost(r)

    def _leaf_residuals(self, leaves: list[Any], *args: Any) -> Any:
        return self._as_flat(self.residual_fn(self.spec.unflatten(leaves), *args))

    # -- evaluations ------------------------------------------------------------------------
    def _evaluate_raw(self, flat: Any) -> Any:
        if self.in_axes is None or self.samples <= self.chunk_rows or not self.chunk_rows:
            return self.residuals(flat)
        params = self._params(flat)
        parts = [
            self._as_flat(self.residual_fn(params, *self._chunk_args(s, e)))
            for s, e in self._chunks()
        ]
        return self.backend.concat(parts)

    def evaluate(self, flat: Any) -> tuple[Any, Any]:
        """Residuals and cost at a trial point (one function evaluation)."""
        self.nfev += 1
        r = self._evaluate_raw(flat)
        return r, self.loss.cost(r)

    def linearize(self, flat: Any) -> Linearization:
        """The Gauss-Newton model at ``flat`` (one Jacobian evaluation)."""
        self.njev += 1
        backend = self.backend
        parts: Iterator[tuple[Any, Any]]
        if self.in_axes is not None:
            leaves = backend.unravel(flat, self.spec)
            parts = (self._ps_jac(leaves, *self._chunk_args(s, e)) for s, e in self._chunks())
        elif self.matrix_free:
            parts = iter(())
        else:
            r, jac = self._jac(flat)
            parts = iter([(r, jac)])
        total = self._accumulate(parts)
        if self.matrix_free:
            return self._matrix_free(flat, total)
        if self.in_axes is None:
            total.jac = jac
        return total

    def products(self, flat: Any, lin: Linearization) -> tuple[Any, Any]:
        """``(v -> J v, u -> Jᵀ u)`` at the point of ``lin``: from J where it is held, else
        from one linearization of the whole residual by the framework's autodiff."""
        b = self.backend
        if lin.jvp is None or lin.vjp is None:
            if lin.jac is not None:
                jac = lin.jac
                lin.jvp, lin.vjp = (lambda v: b.matmul(jac, v)), (lambda u: b.gram(jac, u))
            elif not b.has_autodiff:
                raise InvalidOptionError(
                    f"this option needs Jacobian-vector products, which {b.name} (no "
                    f"autodiff) has only without batched args"
                )
            else:
                jvp, vjp_at = self._product_fns()
                _, lin.vjp = vjp_at(flat)
                lin.jvp = lambda v: jvp(flat, v)
        return lin.jvp, lin.vjp

    def _product_fns(self) -> tuple[Any, Any]:
        """The jvp and vjp builders, called once per run: tracing backends compile there."""
        if self._products is None:
            b = self.backend
            self._products = (b.jvp_fn(self.residuals), b.vjp_fn(self.residuals))
        return self._products  # type: ignore[no-any-return]

    def host_jacobian(self, flat: Any) -> np.ndarray:
        """The whole Jacobian (m, n) as a float64 host array (for scipy's solvers)."""
        b = self.backend
        self.njev += 1
        if self.in_axes is not None:
            leaves = b.unravel(flat, self.spec)
            blocks = [
                b.to_numpy(self._ps_jac(leaves, *self._chunk_args(s, e))[1])
                for s, e in self._chunks()
            ]
            return np.asarray(np.concatenate(blocks, axis=0), dtype=np.float64)
        return np.asarray(b.to_numpy(self._jac(flat)[1]), dtype=np.float64)

    def _accumulate(self, parts: Any) -> Linearization:
        """Sum ``JᵀWJ``, ``Jᵀ(ρ'r)``, the cost and ``diag(JᵀWJ)`` over row chunks."""
        b = self.backend
        rs: list[Any] = []
        A = g = diag = cost = fs_sq = None
        for r, jac in parts:
            rs.append(r)
            w = self.loss.weights(r)
            js, gr = jac, r
            if w.rows is not None:
                js = jac * b.reshape(w.rows, (-1, 1))
                gr = w.grad * r
                fs = gr / w.rows
                fs_part = b.sum(fs * fs)
            else:
                fs_part = 2.0 * w.cost
            g_part = b.gram(jac, gr)
            if self.matrix_free:
                a_part = None
                d_part = b.gram(js * js, b.zeros(b.leaf_meta(gr)[0], gr) + 1.0)
            else:
                a_part = b.gram(js, js)
                d_part = None
            A = a_part if A is None else A + a_part
            diag = d_part if diag is None else diag + d_part
            g = g_part if g is None else g + g_part
            cost = w.cost if cost is None else cost + w.cost
            fs_sq = fs_part if fs_sq is None else fs_sq + fs_part
        if not rs:
            return Linearization(None, None, None, None, None, None, None)
        r_all = rs[0] if len(rs) == 1 else b.concat(rs)
        if A is not None:
            diag = b.diagonal(A)
        return Linearization(r_all, cost, g, diag, A, None, b.sqrt(fs_sq))

    def _matrix_free(self, flat: Any, lin: Linearization) -> Linearization:
        """Attach ``v -> JᵀWJ v`` built from one jvp and one vjp of the whole residual."""
        b = self.backend
        jvp, vjp_at = self._product_fns()
        r, vjp = vjp_at(flat)
        w = self.loss.weights(r)
        if lin.g is None:  # general mode: the gradient from the vjp
            gr = r if w.grad is None else w.grad * r
            fs = gr if w.rows is None else gr / w.rows
            lin = Linearization(r, w.cost, vjp(gr), None, None, None, b.norm(fs))
        row_w = None if w.rows is None else w.rows * w.rows

        def matvec(v: Any) -> Any:
            jv = jvp(flat, v)
            return vjp(jv if row_w is None else row_w * jv)

        lin.matvec = matvec
        lin.jvp, lin.vjp = (lambda v: jvp(flat, v)), vjp
        return lin
