"""The step algebra of a small dense least-squares problem on the host.

On the CPU, a framework's tensors and NumPy arrays live in the same memory, and for a few
dozen parameters the loop's O(n²) and O(n³) work (scaling the model, the damped Cholesky
solves, the norms and the gain ratio) is a few microseconds of arithmetic behind 20-50 µs of
eager dispatch per operation in TensorFlow (5-10 µs in PyTorch and JAX): some 50 operations
per iteration, which can cost more than the Jacobian itself. :class:`HostAlgebra` presents a
:class:`~.ResidualProblem` to the loop through the NumPy backend: the residuals, the Jacobian
and ``JᵀWJ`` still come from the framework (its autodiff, compiled where it compiles), and
each linearization crosses to NumPy once; the loop then runs on NumPy arrays, and every trial
point crosses back once to be evaluated. The loop's code is the same, only its backend
differs.

``least_squares`` takes this path by default on backends whose eager operations cost tens of
microseconds (``Backend.small_algebra_on_host``: TensorFlow), for dense problems on the CPU
with at most :data:`HOST_ALGEBRA_MAX_N` parameters; ``options={"host_algebra": True}`` asks
for it on any backend, ``False`` keeps the loop in the framework. Measured on a 10-parameter
curve fit (10,000 residuals) and a 41-weight MLP: TensorFlow 0.66x and 0.56x the time of its
eager loop; PyTorch and JAX within ±5% either way, so they keep theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dict_minimize.backends._protocol import Backend
from dict_minimize.solvers._problem import Linearization, ResidualProblem, jacobian_products
from dict_minimize.solvers.losses import Loss

#: Above this many parameters the O(n³) solve dominates an iteration and the framework's own
#: linear algebra (the same LAPACK on the CPU) is as fast: the loop stays in the framework.
HOST_ALGEBRA_MAX_N = 1024


def _counter(name: str) -> Any:
    """A counter of the wrapped problem, read and written through."""
    return property(
        lambda self: getattr(self.problem, name),
        lambda self, value: setattr(self.problem, name, value),
    )


class HostAlgebra:
    """A :class:`~.ResidualProblem` as the loop sees it with the NumPy backend.

    Parameters
    ----------
    problem : ResidualProblem
        The framework's problem (dense: not matrix-free).
    host_backend : Backend
        The NumPy backend the loop runs on.

    Every :class:`~.Linearization` it returns holds the framework's own in ``source``: the
    result's residuals and gradient come from there, on x0's device.
    """

    def __init__(self, problem: ResidualProblem, host_backend: Backend[Any]) -> None:
        if problem.matrix_free:
            raise ValueError("the host algebra needs the dense JᵀWJ (not matrix-free)")
        self.problem = problem
        self.backend = host_backend
        self.loss = Loss(host_backend, problem.loss.name, problem.loss.f_scale)
        self.n = problem.n
        fw = problem.backend
        self._to_host: Callable[[Any], np.ndarray] = fw.to_numpy
        self._device, self._dtype = problem.device, problem.dtype

    # The loop reads and (when stepping back or resuming) sets the problem's counters.
    nfev = _counter("nfev")
    njev = _counter("njev")

    @property
    def m(self) -> int:
        return self.problem.m

    def to_device(self, x: np.ndarray) -> Any:
        """A host point as the framework's flat tensor on x0's device."""
        return self.problem.backend.from_numpy(x, self._device, self._dtype)

    def _host(self, value: Any) -> Any:
        return None if value is None else self._to_host(value)

    def evaluate(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r, cost = self.problem.evaluate(self.to_device(flat))
        return self._to_host(r), self._to_host(cost)

    def linearize(self, flat: np.ndarray) -> Linearization:
        device_flat = self.to_device(flat)
        lin = self.problem.linearize(device_flat)
        h = self._host
        out = Linearization(
            h(lin.r), h(lin.cost), h(lin.g), h(lin.diag), h(lin.A), None, h(lin.fs_norm)
        )
        out.jac = h(lin.jac)
        out.source = (device_flat, lin)
        return out

    def products(self, flat: np.ndarray, lin: Linearization) -> tuple[Any, Any]:
        """``(v -> J v, u -> Jᵀ u)`` on the host: from J where the model holds it, else the
        framework's products at the model's point, each crossing once per call."""
        if lin.jvp is None or lin.vjp is None:
            if lin.jac is not None:
                lin.jvp, lin.vjp = jacobian_products(self.backend, lin.jac)
            else:
                if lin.source is None:
                    raise ValueError("a host linearization without its framework model")
                device_flat, device_lin = lin.source
                jvp, vjp = self.problem.products(device_flat, device_lin)
                lin.jvp = lambda v: self._to_host(jvp(self.to_device(v)))
                lin.vjp = lambda u: self._to_host(vjp(self.to_device(u)))
        return lin.jvp, lin.vjp


def device_linearization(lin: Linearization) -> Linearization:
    """The framework's linearization behind a host one (itself when it has none)."""
    return lin if lin.source is None else lin.source[1]
