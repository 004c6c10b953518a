"""Constraints written on the params dict -> scipy ``NonlinearConstraint`` on the flat vector.

A constraint is a dict ``{"type": "eq" | "ineq", "fun": c}`` where ``c(params, *args)``
returns a scalar or a tensor of any shape (flattened); ``"eq"`` means ``c == 0`` and
``"ineq"`` means ``c >= 0``, as in scipy. Its Jacobian comes from the framework's autodiff
(one Jacobian per point, shared by scipy's value and Jacobian calls), or from scipy's finite
differences on numpy_api. scipy's own ``LinearConstraint``/``NonlinearConstraint`` objects
pass through untouched and act on the flat float64 vector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.optimize as so

from dict_minimize._errors import InvalidOptionError, ObjectiveError
from dict_minimize._methods import CONSTRAINED_METHODS, MethodInfo

if TYPE_CHECKING:
    from dict_minimize._objective import Objective


class _DictConstraint:
    """Value and Jacobian of one params-dict constraint, cached at the last point."""

    def __init__(self, obj: Objective, fun: Any, args: tuple[Any, ...], index: int) -> None:
        self.obj, self.fun, self.args, self.index = obj, fun, args, index
        self._x: np.ndarray | None = None
        self._value: np.ndarray | None = None
        self._jac: np.ndarray | None = None
        self._jac_fn: Any = None
        backend = obj.backend
        if backend.has_autodiff:
            self._jac_fn = backend.jacobian_fn(self._flat)

    def _flat(self, flat: Any) -> Any:
        backend = self.obj.backend
        out = self.fun(self.obj.params(flat), *self.args)
        if not backend.is_leaf(out):
            raise ObjectiveError(
                f"constraints[{self.index}]['fun'] returned a {type(out).__name__}; it must "
                f"return a {backend.name} tensor (scalar or vector) computed from params"
            )
        shape = backend.leaf_meta(out)[0]
        size = int(np.prod(shape)) if len(shape) else 1
        return backend.cast(backend.reshape(out, (size,)), self.obj.dtype)

    def _evaluate(self, x: np.ndarray, with_jac: bool) -> None:
        fresh = self._x is not None and np.array_equal(x, self._x)
        if fresh and (self._jac is not None or not with_jac):
            return
        backend, flat = self.obj.backend, self.obj.to_device(x)
        if with_jac and self._jac_fn is not None:
            value, jac = self._jac_fn(flat)
            self._jac = np.asarray(backend.to_numpy(jac), dtype=np.float64)
        else:
            value, self._jac = self._flat(flat), None
        self._value = np.asarray(backend.to_numpy(value), dtype=np.float64)
        self._x = np.array(x, copy=True)

    def value(self, x: np.ndarray) -> np.ndarray:
        self._evaluate(x, with_jac=False)
        return self._value  # type: ignore[return-value]

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        self._evaluate(x, with_jac=True)
        return self._jac  # type: ignore[return-value]


def build_constraints(constraints: Any, info: MethodInfo, obj: Objective) -> list[Any]:
    """Translate ``constraints=`` for scipy; a clear error for anything malformed."""
    if constraints is None:
        return []
    if isinstance(constraints, Mapping | so.LinearConstraint | so.NonlinearConstraint):
        constraints = [constraints]
    constraints = list(constraints)
    if constraints and not info.constraints:
        raise InvalidOptionError(
            f"method {info.name!r} cannot handle constraints; use one of "
            f"{', '.join(CONSTRAINED_METHODS)}"
        )
    out: list[Any] = []
    for i, con in enumerate(constraints):
        if isinstance(con, so.LinearConstraint | so.NonlinearConstraint):
            out.append(con)
            continue
        if not isinstance(con, Mapping):
            raise InvalidOptionError(
                f"constraints[{i}] is a {type(con).__name__}; give a dict "
                f"{{'type': 'eq'|'ineq', 'fun': fun(params, *args)}} or a scipy constraint object"
            )
        unknown = set(con) - {"type", "fun", "args"}
        if unknown:
            raise InvalidOptionError(
                f"constraints[{i}] has unknown key(s) {sorted(unknown)}; allowed: type, fun, args"
            )
        kind = con.get("type")
        if kind not in ("eq", "ineq"):
            raise InvalidOptionError(
                f"constraints[{i}]['type'] must be 'eq' or 'ineq', got {kind!r}"
            )
        if not callable(con.get("fun")):
            raise InvalidOptionError(f"constraints[{i}]['fun'] must be callable")
        c_args = con.get("args", obj.args)
        c_args = c_args if isinstance(c_args, tuple) else (c_args,)
        dc = _DictConstraint(obj, con["fun"], c_args, i)
        upper = 0.0 if kind == "eq" else np.inf
        jac: Any = dc.jacobian if obj.backend.has_autodiff else "2-point"
        out.append(so.NonlinearConstraint(dc.value, 0.0, upper, jac=jac))
    return out
