"""The user's objective as scipy sees it: functions of one flat float64 NumPy vector.

Each evaluation moves the point to the device in one transfer, calls the objective on a dict
in x0's dtypes, and brings value and gradient back in one transfer; where the parameters live
in host memory, an objective that computes its own gradient takes the backend's host fast path
instead (leaves made from slices of the point, the gradient joined on the host:
``backends/_host.py``). It counts evaluations, checks what the objective returns, and
remembers the best finite point so that nothing is lost when a run fails or is interrupted.
The derivatives of a ``jac=False`` objective come from the framework's autodiff, compiled once
and shared with later calls where they can be (``_compiled.py``).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

from dict_minimize._bounds import leaf_at
from dict_minimize._compiled import Derivatives, derivatives
from dict_minimize._errors import InvalidParamsError, ObjectiveError
from dict_minimize._tree import TreeSpec, format_path
from dict_minimize.backends._host import HostLeaves
from dict_minimize.backends._protocol import Backend


class Objective:
    """Evaluate ``fun`` (and its derivatives) at flat host points.

    Parameters
    ----------
    backend : Backend
        The framework adapter.
    spec : TreeSpec
        Layout of x0.
    fun : callable
        ``fun(params, *args)``: returns ``(loss, grad_dict)`` when ``jac`` is True, else the loss.
    args : tuple
        Extra arguments for ``fun`` and ``hessp``.
    jac : bool
        Whether ``fun`` returns its own gradient.
    hessp : callable, optional
        ``hessp(params, p_dict, *args) -> dict``, the user's Hessian-vector product.
    device : object
        Where x0 lives; every flat vector is put there.
    """

    def __init__(
        self,
        backend: Backend[Any],
        spec: TreeSpec,
        fun: Callable[..., Any],
        args: tuple[Any, ...],
        jac: bool,
        hessp: Callable[..., Any] | None,
        device: Any,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.fun = fun
        self.args = args
        self.jac = jac
        self.user_hessp = hessp
        self.device = device
        self.dtype = backend.flat_dtype(device)
        self.nfev = self.njev = self.nhev = 0
        self.best_fun = math.inf
        self.best_flat: Any = None  # the best point, as recorded (device copy or host record)
        self.last_fun = math.nan
        # Non-finite trial points are rejected (see ``_reject``): how many, and which.
        self.worst_fun = -math.inf
        self.nonfinite = 0
        self.nonfinite_since_best = 0
        self._rejected: set[bytes] = set()
        self._checked = False
        # What value_and_grad's short way after the first evaluation takes (no closure over
        # self: a reference cycle would keep args and the best point alive until a full GC).
        self._fast: tuple[HostLeaves, Callable[..., Any]] | None = None
        #: Set by a caller that hands value_and_grad a fresh x on every call, which nothing
        #: else holds or changes (scipy's minimize does: its function wrappers pass
        #: ``np.copy(x)``). The leaves may then be views of x, saving a copy of the point per
        #: evaluation (a few per cent of the run at a million parameters).
        self.x_is_fresh = False
        self._vg: Any = None
        self._value: Any = None
        self._derivatives: Derivatives | None = None  # of a jac=False objective (autodiff)
        # The user's own objective (jac=True, or NumPy's finite differences) takes the
        # backend's host fast path where the parameters live in host memory.
        self._host_leaves: HostLeaves | None = None
        self._bound: Callable[..., Any] | None = None  # fun as the backend binds it (see _evaluate)
        # A compiled jac=True objective (jax.jit) compiled with the unflattening of the point
        # and the flattening of its gradient, for the evaluations after the first (which
        # validates what it returns): one program and one transfer each way per evaluation.
        self._own: Derivatives | None = None
        self._fused: Callable[[Any], tuple[Any, Any]] | None = None
        self._fused_ran = False
        if jac and backend.is_compiled(fun) and all(backend.is_leaf(a) for a in args):
            self._own = derivatives(
                backend,
                spec,
                fun,
                args,
                self.dtype,
                functools.partial(_flat_own_gradient, backend, spec, args, self.dtype),
            )
        if not jac and backend.has_autodiff:
            self._derivatives = derivatives(
                backend,
                spec,
                fun,
                args,
                self.dtype,
                functools.partial(_flat_loss, backend, spec, args),
            )
            self._vg = self._derivatives.get("value_and_grad")
            self._value = self._derivatives.get("value")
        elif spec.size >= backend.host_min_size:
            self._host_leaves = backend.host_leaves(spec, device)

    # -- conversions ----------------------------------------------------------------------
    def to_device(self, x: np.ndarray) -> Any:
        """One host-to-device copy of a flat point."""
        return self.backend.from_numpy(x, self.device, self.dtype)

    def flat_x0(self, leaves: list[Any]) -> np.ndarray:
        """x0's leaves as one new float64 host vector (joined on the host where they live)."""
        if self._host_leaves is not None:
            joined = self._host_leaves.join(leaves)
            if joined is not None:
                return joined
        flat = self.backend.ravel(leaves, self.spec, self.dtype)
        return np.asarray(self.backend.to_numpy(flat), dtype=np.float64)

    def params(self, flat: Any) -> Any:
        """The params dict (x0's nesting, dtypes, device) of a flat device vector."""
        return self.spec.unflatten(self.backend.unravel(flat, self.spec))

    def tree_to_flat(self, tree: Any, what: str) -> Any:
        """Validate a dict shaped like x0 (gradient, Hessian product) and ravel it on device."""
        return tree_to_flat(self.backend, self.spec, self.dtype, tree, what)

    # -- the loss ---------------------------------------------------------------------------
    def _check_scalar(self, value: Any) -> Any:
        """A framework scalar tensor, or a float for a plain Python/NumPy number."""
        return check_scalar(self.backend, value, self.jac)

    def _record(self, value: float, flat: Any) -> float:
        self.last_fun = value
        if value < self.best_fun:  # NaN compares False: never becomes the best
            self.best_fun, self.best_flat = value, flat
            self.nonfinite_since_best = 0
        elif value > self.worst_fun:
            self.worst_fun = value
        return value

    def _reject(self, x: np.ndarray) -> float:
        """The value scipy sees at a trial point where the loss or gradient is not finite.

        Above every finite value seen, so that a line search backs off and a trust region
        shrinks; finite and at a scale like theirs, so that the step interpolation of
        L-BFGS-B and TNC shrinks the step by a sane factor (with +inf or 1e300 they shrink it
        to nothing and report convergence). The gradient reported with it is zero.
        """
        self.nonfinite += 1
        self.nonfinite_since_best += 1
        self._rejected.add(x.tobytes())
        worst = max(self.worst_fun, self.best_fun)
        spread = max(worst - self.best_fun, abs(worst))
        self.last_fun = worst + (spread if spread > 0 else 1.0)
        return self.last_fun

    def was_rejected(self, x: np.ndarray) -> bool:
        """Whether ``x`` is a trial point whose loss or gradient was not finite."""
        return bool(self._rejected) and np.asarray(x, np.float64).tobytes() in self._rejected

    def _first_check(self, value: float, grad: np.ndarray | None) -> None:
        self._checked = True
        if self._own is not None:
            self._fused = self._own.get("own_value_and_grad")
        if self._host_leaves is not None and self.jac and self._bound is not None:
            self._fast = (self._host_leaves, self._bound)  # see _fast_value_and_grad
        self.worst_fun = value  # later values update it only when they are not a new best
        if not math.isfinite(value):
            raise ObjectiveError(
                f"the objective is {value} at x0; start from a point where it is finite"
            )
        if grad is not None and not np.isfinite(grad).all():
            bad = int(np.flatnonzero(~np.isfinite(grad))[0])
            raise ObjectiveError(
                f"the gradient is not finite at x0 (first at {leaf_at(self.spec, bad)}); "
                f"start from a point where it is finite"
            )

    def _evaluate(self, x: np.ndarray, grad: bool) -> tuple[Any, float, np.ndarray | None]:
        """``(point, loss, gradient)`` of the user's objective at scipy's ``x``, on the host.

        ``point`` records ``x`` for :meth:`best_x`. The gradient (None unless ``grad``) comes
        from a ``jac=True`` objective; with ``jac=True`` and not ``grad`` it is not checked.
        """
        host = self._host_leaves
        if host is not None:
            point, leaves = host.leaves(x)
        else:
            point = self.to_device(x)
            leaves = self.backend.unravel(point, self.spec)
            if self.jac:
                leaves = self.backend.detached(leaves)
        params = self.spec.unflatten(leaves)
        bound = self._bound
        if bound is None:  # first evaluation
            bound = self._bound = (
                self.backend.bind_objective(self.fun, params, self.args) or self.fun
            )
        return self._convert(point, bound(params, *self.args), grad)

    def _convert(self, point: Any, out: Any, grad: bool) -> tuple[Any, float, np.ndarray | None]:
        """Check what the objective returned and bring it to the host (see :meth:`_evaluate`)."""
        if not self.jac:
            loss, tree = out, None
        elif type(out) is tuple and len(out) == 2:
            loss, tree = out
        else:
            pair = isinstance(out, Sequence) and not isinstance(out, str)
            if not pair or len(out) != 2:
                raise ObjectiveError(
                    f"with jac=True (the default) the objective must return (loss, grad_dict), "
                    f"got {type(out).__name__}; pass jac=False if it returns only the loss"
                )
            loss, tree = out
        if type(loss) is not float:
            loss = self._check_scalar(loss)
        host = self._host_leaves
        if host is None:
            if not grad:
                return (point, *self._host(loss, None))
            return (point, *self._host(loss, self.tree_to_flat(tree, "gradient")))
        value = loss if type(loss) is float else host.loss(loss)
        if not grad:
            return point, value, None
        grad_host = host.gradient(tree)
        if grad_host is None:  # something unusual: validate (and explain) on the device path
            value, grad_host = self._host(loss, self.tree_to_flat(tree, "gradient"))
        return point, value, grad_host

    def _fast_value_and_grad(
        self, x: np.ndarray, host: HostLeaves, bound: Callable[..., Any]
    ) -> tuple[float, np.ndarray]:
        """:meth:`value_and_grad` on the host fast path, for the evaluations after the first
        (which checked the objective): the common case in the fewest steps (a few microseconds
        per evaluation are a sizeable part of a small problem's run). Anything else (a result
        that is not a ``(loss, grad)`` tuple, a loss that is neither a float nor a scalar
        tensor, a gradient the host path does not take, a value that is not finite) gets the
        full checks of :meth:`_convert`."""
        point, leaves = host.leaves(x, self.x_is_fresh)
        out = bound(self.spec.unflatten(leaves), *self.args)
        if type(out) is tuple and len(out) == 2:
            loss, tree = out
            value = loss if type(loss) is float else host.scalar(loss)
            if value is not None:
                grad = host.gradient(tree)
                # Finite iff the loss and every element of the gradient are (one product).
                if grad is not None and math.isfinite(value + grad.dot(grad)):
                    self.last_fun = value  # what _record does
                    if value < self.best_fun:
                        self.best_fun, self.best_flat = value, point
                        self.nonfinite_since_best = 0
                    elif value > self.worst_fun:
                        self.worst_fun = value
                    return value, grad
        return self._checked_value_and_grad(x, *self._convert(point, out, True))

    def _fused_value_and_grad(
        self, x: np.ndarray, fused: Callable[[Any], tuple[Any, Any]]
    ) -> tuple[float, np.ndarray] | None:
        """:meth:`value_and_grad` through the fused program; None (and never again) when
        its first call fails: the objective could not be compiled that way (a static
        argument, Python side effects under a trace), and the usual path takes over (raising
        there whatever error is the objective's own)."""
        flat = self.backend.compiled_input(x, self.device, self.dtype)
        if flat is x and not self.x_is_fresh:  # recorded as the best point: must not change
            flat = x.copy()
        try:
            value, grad = self._host(*fused(flat))
        except Exception:
            if self._fused_ran:
                raise
            self._fused = None
            return None
        self._fused_ran = True
        return self._checked_value_and_grad(x, flat, value, grad)

    def _host(self, value: Any, grad_flat: Any) -> tuple[float, np.ndarray | None]:
        """Bring value (and gradient) to the host in a single transfer."""
        backend = self.backend
        if grad_flat is None:
            if isinstance(value, float):
                return value, None
            return float(backend.to_numpy(value).reshape(())), None
        if isinstance(value, float):
            return value, backend.to_numpy(grad_flat)
        return backend.loss_and_flat_to_host(value, grad_flat, self.dtype)

    def value(self, x: np.ndarray) -> float:
        """The loss at ``x`` (derivative-free methods and finite differences)."""
        self.nfev += 1
        if self._value is not None:
            flat = self.to_device(x)
            value, _ = self._host(self._value(flat), None)
        else:
            flat, value, _ = self._evaluate(x, grad=False)
        if not self._checked:
            self._first_check(value, None)
        if not math.isfinite(value):
            return self._reject(x)
        return self._record(value, flat)

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at ``x``, in float64."""
        self.nfev += 1
        self.njev += 1
        if self._fused is not None:
            out = self._fused_value_and_grad(x, self._fused)
            if out is not None:
                return out
        fast = self._fast
        if fast is not None:
            return self._fast_value_and_grad(x, *fast)
        if self._vg is not None:
            flat = self.to_device(x)
            value, grad = self._host(*self._vg(flat))
        else:
            flat, value, grad = self._evaluate(x, grad=True)
        if not self._checked:
            self._first_check(value, grad)
        return self._checked_value_and_grad(x, flat, value, grad)

    def _checked_value_and_grad(
        self, x: np.ndarray, flat: Any, value: float, grad: np.ndarray | None
    ) -> tuple[float, np.ndarray]:
        """Record a finite evaluation; reject one whose loss or gradient is not finite."""
        grad_host = cast(np.ndarray, grad)  # asked for: never None
        # Finite iff every element is (one dot product; element by element if it overflows).
        if not (
            math.isfinite(value)
            and (math.isfinite(grad_host.dot(grad_host)) or _all_finite(grad_host))
        ):
            return self._reject(x), np.zeros(self.spec.size)
        return self._record(value, flat), grad_host

    # -- second order -----------------------------------------------------------------------
    @property
    def has_hessp(self) -> bool:
        return self.user_hessp is not None or (not self.jac and self.backend.has_autodiff)

    def hessp(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Hessian-vector product at ``x`` with direction ``p``."""
        self.nhev += 1
        flat = self.to_device(x)
        if self.user_hessp is not None:
            p_dict = self.params(self.to_device(p))
            out = self.user_hessp(self.params(flat), p_dict, *self.args)
            result = self.backend.to_numpy(self.tree_to_flat(out, "hessp result"))
        else:
            hvp = self._derivatives.get("hvp")  # type: ignore[union-attr]
            result = self.backend.to_numpy(hvp(flat, self.to_device(p)))
        return np.asarray(result, dtype=np.float64)

    def hess(self, x: np.ndarray) -> np.ndarray:
        """The full Hessian at ``x`` (dogleg, trust-exact)."""
        if self.user_hessp is not None:
            # One product per column: fine for the small problems these methods suit.
            eye = np.eye(self.spec.size)
            columns = [self.hessp(x, eye[i]) for i in range(self.spec.size)]
            return np.stack(columns, axis=1)
        self.nhev += 1
        hessian = self._derivatives.get("hessian")  # type: ignore[union-attr]
        return np.asarray(self.backend.to_numpy(hessian(self.to_device(x))), dtype=np.float64)

    # -- results --------------------------------------------------------------------------
    def tree(self, x: np.ndarray) -> Any:
        """The params dict of a host point (for callbacks and results)."""
        return self.params(self.to_device(x))

    def best_x(self, fallback: np.ndarray) -> np.ndarray:
        """Host copy of the best point seen, or ``fallback`` before any finite evaluation."""
        if self.best_flat is None:
            return fallback
        if self._host_leaves is not None:
            return self._host_leaves.point_to_host(self.best_flat)
        return np.asarray(self.backend.to_numpy(self.best_flat), dtype=np.float64)


def check_scalar(backend: Backend[Any], value: Any, jac: bool) -> Any:
    """A framework scalar tensor, or a float for a plain Python/NumPy number."""
    if type(value) is float:  # the common NumPy case, first (per-evaluation path)
        return value
    if backend.is_leaf(value):
        shape = tuple(backend.leaf_meta(value)[0])
        if shape != () and shape != (1,):
            raise ObjectiveError(
                f"the objective must return a scalar loss, got a tensor of shape {shape}; "
                f"reduce it (e.g. with .sum() or .mean())"
            )
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.reshape(()))
    raise ObjectiveError(
        f"the objective returned a {type(value).__name__} where a scalar loss was expected"
        + (
            "; with jac=True (the default) it must return (loss, grad_dict)"
            if jac
            else "; with jac=False it must return only the loss"
        )
    )


def _flat_loss(
    backend: Backend[Any], spec: TreeSpec, args: tuple[Any, ...], get_fun: Callable[[], Any]
) -> Callable[[Any], Any]:
    """A jac=False objective as a function of the flat vector, for the framework's autodiff.

    It reaches the objective through ``get_fun`` only, and holds no :class:`Objective`: the
    compiled derivatives built from it may serve later calls (``dict_minimize/_compiled.py``).
    """

    def flat_loss(flat: Any) -> Any:
        params = spec.unflatten(backend.unravel(flat, spec))
        value = check_scalar(backend, get_fun()(params, *args), jac=False)
        if isinstance(value, float):
            raise ObjectiveError(
                "with jac=False the objective must return a "
                f"{backend.name} tensor computed from params, got a Python float; "
                "it cannot be differentiated"
            )
        return value

    return flat_loss


def tree_to_flat(backend: Backend[Any], spec: TreeSpec, dtype: Any, tree: Any, what: str) -> Any:
    """Validate a dict shaped like x0 (gradient, Hessian product) and ravel it on device."""
    is_leaf, leaf_meta = backend.is_leaf, backend.leaf_meta  # bound once: every evaluation
    values = spec.match(tree, what, is_leaf=is_leaf)
    for leaf, value in zip(spec.leaves, values):
        if not is_leaf(value):
            raise ObjectiveError(
                f"{format_path(leaf.path, what)} is a {type(value).__name__}; it must be a "
                f"{backend.name} tensor of shape {leaf.shape}"
            )
        shape = leaf_meta(value)[0]
        if tuple(shape) != leaf.shape:
            raise ObjectiveError(
                f"{format_path(leaf.path, what)} has shape {tuple(shape)} but "
                f"{format_path(leaf.path)} has shape {leaf.shape}"
            )
    return backend.ravel(values, spec, dtype)


def _flat_own_gradient(
    backend: Backend[Any],
    spec: TreeSpec,
    args: tuple[Any, ...],
    dtype: Any,
    get_fun: Callable[[], Any],
) -> Callable[[Any], tuple[Any, Any]]:
    """A jac=True objective as ``flat -> (loss, flat gradient)``, to be compiled whole (see
    :meth:`Backend.is_compiled`); like :func:`_flat_loss` it reaches the objective through
    ``get_fun`` only."""

    def flat_own_gradient(flat: Any) -> tuple[Any, Any]:
        params = spec.unflatten(backend.unravel(flat, spec))
        out = get_fun()(params, *args)
        if not (isinstance(out, Sequence) and not isinstance(out, str) and len(out) == 2):
            raise ObjectiveError("with jac=True the objective must return (loss, grad_dict)")
        loss = check_scalar(backend, out[0], jac=True)
        return loss, tree_to_flat(backend, spec, dtype, out[1], "gradient")

    return flat_own_gradient


def _all_finite(v: np.ndarray) -> bool:
    """Whether every element of a vector is finite."""
    return bool(np.isfinite(v).all())


def check_x0_finite(spec: TreeSpec, x0: np.ndarray) -> None:
    """Refuse NaN/Inf in x0, naming the first offending key and element."""
    if np.isfinite(x0).all():
        return
    bad = np.flatnonzero(~np.isfinite(x0))
    if bad.size:
        raise InvalidParamsError(
            f"x0 has {bad.size} non-finite value(s), first at {leaf_at(spec, int(bad[0]))} "
            f"= {x0[bad[0]]}; start from finite values"
        )
