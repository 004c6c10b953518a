"""The test problem, written once in a case's array namespace, with analytic derivatives.

``f(x) = sum(w * (exp(z) - z))`` with ``z = D x - t``, where ``D`` is bidiagonal (1 on the
diagonal, -1/2 below), so every element is coupled to its neighbours across tensor boundaries.
The unique minimum is ``z = 0``, away from ``x = 0``; the Hessian ``D^T diag(w exp(z)) D`` is
well conditioned near it (``w`` in [1/2, 4], ``D``'s singular values in [1/2, 3/2]).

Every constant factor is a power of two and every sum has two terms, so the analytic gradient,
Hessian-vector product and Hessian below round exactly like reverse-mode autodiff through
``fun`` in every framework, compiled or not (a polynomial would not: XLA fuses ``a * b + c``
into one FMA and Grappler rewrites ``x ** 3``). scipy driven by these formulas and dict_minimize
driven by autodiff therefore see the same bits; test_derivatives.py checks that premise.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.optimize as so

from cases import Case

#: Key order deliberately not sorted; shapes include a 0-d tensor.
SHAPES: OrderedDict[str, tuple[int, ...]] = OrderedDict(
    [("w", (2, 2)), ("b", ()), ("v", (3,)), ("m", (1, 2))]
)
SIZE = sum(int(np.prod(s)) for s in SHAPES.values())
OFFSETS = dict(zip(SHAPES, np.cumsum([0] + [int(np.prod(s)) for s in SHAPES.values()])))

_rng = np.random.default_rng(20240611)
W = np.resize([0.5, 1.0, 2.0, 4.0], SIZE)
T = _rng.uniform(-1.0, 1.0, SIZE)
X0 = _rng.uniform(-1.0, 1.0, SIZE)

#: Bounds that are active at the bounded solution: (lb_dict, ub_dict) as plain numbers /
#: NumPy arrays keyed like x0 (tests convert arrays to tensors), and the flat equivalents.
LB_SPEC: dict[str, Any] = {"v": -0.25, "m": np.array([[-np.inf, 0.0]])}
UB_SPEC: dict[str, Any] = {"w": np.array([[0.5, np.inf], [0.25, 0.5]]), "b": 0.5}


def flat_bounds_reference() -> tuple[np.ndarray, np.ndarray]:
    """The flat float64 bounds equivalent to ``LB_SPEC``/``UB_SPEC``, built by hand."""
    lb, ub = np.full(SIZE, -np.inf), np.full(SIZE, np.inf)
    for out, spec in ((lb, LB_SPEC), (ub, UB_SPEC)):
        for key, value in spec.items():
            n = int(np.prod(SHAPES[key]))
            out[OFFSETS[key] : OFFSETS[key] + n] = np.broadcast_to(value, SHAPES[key]).ravel()
    return lb, ub


def x0_inside_bounds() -> np.ndarray:
    """``X0`` moved strictly inside the bounds."""
    lb, ub = flat_bounds_reference()
    return np.clip(X0, np.maximum(lb, -1e300) + 0.05, np.minimum(ub, 1e300) - 0.05)


@dataclass
class Counter:
    """Calls of the flat reference functions."""

    f: int = 0
    hp: int = 0
    iterations: int = 0


@dataclass
class CoupledExp:
    """The problem on one case: flat formulas, dict objectives and scipy references."""

    case: Case
    count: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.w = self.case.tensor(W)
        self.t = self.case.tensor(T)

    # -- formulas on a flat float64 tensor ----------------------------------------------
    def _d(self, x: Any) -> Any:
        xp = self.case.xp
        return x - 0.5 * xp.concatenate([x[:1] * 0, x[:-1]])

    def _dt(self, u: Any) -> Any:
        xp = self.case.xp
        return u - 0.5 * xp.concatenate([u[1:], u[:1] * 0])

    def value(self, x: Any) -> Any:
        z = self._d(x) - self.t
        return self.case.xp.sum(self.w * (self.case.xp.exp(z) - z))

    def grad(self, x: Any) -> Any:
        z = self._d(x) - self.t
        return self._dt(self.w * (self.case.xp.exp(z) - 1))

    def hvp(self, x: Any, p: Any) -> Any:
        z = self._d(x) - self.t
        return self._dt(self.w * self.case.xp.exp(z) * self._d(p))

    # -- the objective as a user writes it on the params dict ------------------------------
    def x0(self, dtype: str = "float64", flat: np.ndarray = X0) -> OrderedDict[str, Any]:
        return OrderedDict(
            (k, self.case.tensor(flat[OFFSETS[k] : OFFSETS[k] + int(np.prod(s))].reshape(s), dtype))
            for k, s in SHAPES.items()
        )

    def fun(self, params: Any) -> Any:
        """``jac=False``: the loss only."""
        return self.value(self.case.flat(params))

    def fun_and_grad(self, params: Any) -> tuple[Any, dict[Any, Any]]:
        """``jac=True``: the loss and its analytic gradient dict."""
        x = self.case.flat(params)
        return self.value(x), self.case.split(self.grad(x), params)

    def hessp(self, params: Any, p: Any) -> dict[Any, Any]:
        return self.case.split(self.hvp(self.case.flat(params), self.case.flat(p)), params)

    def bounds(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``LB_SPEC``/``UB_SPEC`` with arrays turned into tensors of the case."""

        def convert(spec: dict[str, Any]) -> dict[str, Any]:
            return {k: v if isinstance(v, float) else self.case.tensor(v) for k, v in spec.items()}

        return convert(LB_SPEC), convert(UB_SPEC)

    # -- scipy's view: flat float64 NumPy vectors -------------------------------------------
    def ref_value(self, x: np.ndarray) -> float:
        self.count.f += 1
        return float(self.case.numpy(self.value(self.case.tensor(x))))

    def ref_value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.count.f += 1
        xt = self.case.tensor(x)
        return float(self.case.numpy(self.value(xt))), self.case.numpy(self.grad(xt))

    def ref_hessp(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        self.count.hp += 1
        return self.case.numpy(self.hvp(self.case.tensor(x), self.case.tensor(p)))

    def ref_hess(self, x: np.ndarray) -> np.ndarray:
        """The Hessian column by column, as autodiff (and dict_minimize's hessp path) builds it."""
        return np.stack([self.ref_hessp(x, e) for e in np.eye(SIZE)], axis=1)

    def reference(
        self,
        method: str,
        *,
        jac: bool | str | None = True,
        hessp: bool = False,
        hess: bool = False,
        bounds: bool | tuple[np.ndarray, np.ndarray] = False,
        x0: np.ndarray = X0,
        **kwargs: Any,
    ) -> so.OptimizeResult:
        """scipy.optimize.minimize run directly on the flat problem (resets the counters).

        ``jac=True``: the analytic gradient; ``"2-point"``: scipy's finite differences;
        ``None``: derivative-free. ``bounds``: True for ``LB_SPEC``/``UB_SPEC``, or flat
        ``(lb, ub)``.
        """
        self.count = Counter()
        fun: Callable[..., Any] = self.ref_value_and_grad if jac is True else self.ref_value
        if hessp:
            kwargs["hessp"] = self.ref_hessp
        if hess:
            kwargs["hess"] = self.ref_hess
        if bounds is True:
            kwargs["bounds"] = so.Bounds(*flat_bounds_reference())
        elif bounds is not False:
            kwargs["bounds"] = so.Bounds(*bounds)

        def callback(*_: Any) -> None:  # counts iterations (COBYLA's result has no nit)
            self.count.iterations += 1

        with warnings.catch_warnings():
            # trust-constr's quasi-Newton fallback warns on zero steps, as dict_minimize mutes.
            warnings.filterwarnings("ignore", message="delta_grad == 0.0", category=UserWarning)
            return so.minimize(fun, x0, method=method, jac=jac, callback=callback, **kwargs)
