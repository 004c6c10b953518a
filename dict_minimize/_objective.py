"""The user's objective as scipy sees it: functions of one flat float64 NumPy vector.

Each evaluation moves the point to the device in one transfer, calls the objective on a dict
in x0's dtypes, and brings value and gradient back in one transfer. It counts evaluations,
checks what the objective returns, and remembers the best finite point so that nothing is
lost when a run fails or is interrupted.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dict_minimize._bounds import leaf_at
from dict_minimize._errors import InvalidParamsError, ObjectiveError
from dict_minimize._tree import TreeSpec, format_path
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
        self.best_flat: Any = None  # device copy of the best point
        self.last_fun = math.nan
        self._checked = False
        self._vg: Any = None
        self._value: Any = None
        self._hvp: Any = None
        self._hess: Any = None
        if not jac and backend.has_autodiff:
            self._vg = backend.value_and_grad_fn(self._flat_loss)
            self._value = backend.value_fn(self._flat_loss)

    # -- conversions ----------------------------------------------------------------------
    def to_device(self, x: np.ndarray) -> Any:
        """One host-to-device copy of a flat point."""
        return self.backend.from_numpy(x, self.device, self.dtype)

    def params(self, flat: Any) -> Any:
        """The params dict (x0's nesting, dtypes, device) of a flat device vector."""
        return self.spec.unflatten(self.backend.unravel(flat, self.spec))

    def tree_to_flat(self, tree: Any, what: str) -> Any:
        """Validate a dict shaped like x0 (gradient, Hessian product) and ravel it on device."""
        backend, spec = self.backend, self.spec
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
        return backend.ravel(values, spec, self.dtype)

    # -- the loss ---------------------------------------------------------------------------
    def _check_scalar(self, value: Any) -> Any:
        """A framework scalar tensor, or a float for a plain Python/NumPy number."""
        if type(value) is float:  # the common NumPy case, first (per-evaluation path)
            return value
        backend = self.backend
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
                if self.jac
                else "; with jac=False it must return only the loss"
            )
        )

    def _flat_loss(self, flat: Any) -> Any:
        """The objective as a function of the flat vector, for the framework's autodiff."""
        value = self._check_scalar(self.fun(self.params(flat), *self.args))
        if isinstance(value, float):
            raise ObjectiveError(
                "with jac=False the objective must return a "
                f"{self.backend.name} tensor computed from params, got a Python float; "
                "it cannot be differentiated"
            )
        return value

    def _record(self, value: float, flat: Any) -> float:
        self.last_fun = value
        if value < self.best_fun:  # NaN compares False: never becomes the best
            self.best_fun, self.best_flat = value, flat
        return value

    def _first_check(self, value: float, grad: np.ndarray | None) -> None:
        self._checked = True
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

    def _call_user(self, flat: Any) -> tuple[Any, Any]:
        leaves = self.backend.unravel(flat, self.spec)
        if self.jac:
            leaves = self.backend.detached(leaves)
        out = self.fun(self.spec.unflatten(leaves), *self.args)
        if not self.jac:
            return self._check_scalar(out), None
        pair = type(out) is tuple or (isinstance(out, Sequence) and not isinstance(out, str))
        if not pair or len(out) != 2:
            raise ObjectiveError(
                f"with jac=True (the default) the objective must return (loss, grad_dict), "
                f"got {type(out).__name__}; pass jac=False if it returns only the loss"
            )
        return self._check_scalar(out[0]), out[1]

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
        flat = self.to_device(x)
        self.nfev += 1
        if self._value is not None:
            value, _ = self._host(self._value(flat), None)
        else:
            loss, _ = self._call_user(flat)
            value, _ = self._host(loss, None)
        if not self._checked:
            self._first_check(value, None)
        return self._record(value, flat)

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at ``x``, in float64."""
        flat = self.to_device(x)
        self.nfev += 1
        self.njev += 1
        if self._vg is not None:
            loss, grad_flat = self._vg(flat)
        else:
            loss, grad = self._call_user(flat)
            grad_flat = self.tree_to_flat(grad, "gradient")
        value, grad_host = self._host(loss, grad_flat)
        if not self._checked:
            self._first_check(value, grad_host)
        return self._record(value, flat), grad_host  # type: ignore[return-value]

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
            if self._hvp is None:
                self._hvp = self.backend.hvp_fn(self._flat_loss)
            result = self.backend.to_numpy(self._hvp(flat, self.to_device(p)))
        return np.asarray(result, dtype=np.float64)

    def hess(self, x: np.ndarray) -> np.ndarray:
        """The full Hessian at ``x`` (dogleg, trust-exact)."""
        if self.user_hessp is not None:
            # One product per column: fine for the small problems these methods suit.
            eye = np.eye(self.spec.size)
            columns = [self.hessp(x, eye[i]) for i in range(self.spec.size)]
            return np.stack(columns, axis=1)
        self.nhev += 1
        if self._hess is None:
            self._hess = self.backend.hessian_fn(self._flat_loss)
        return np.asarray(self.backend.to_numpy(self._hess(self.to_device(x))), dtype=np.float64)

    # -- results --------------------------------------------------------------------------
    def tree(self, x: np.ndarray) -> Any:
        """The params dict of a host point (for callbacks and results)."""
        return self.params(self.to_device(x))

    def best_x(self, fallback: np.ndarray) -> np.ndarray:
        """Host copy of the best point seen, or ``fallback`` before any finite evaluation."""
        if self.best_flat is None:
            return fallback
        return np.asarray(self.backend.to_numpy(self.best_flat), dtype=np.float64)


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
