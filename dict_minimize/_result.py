"""Result objects: scipy's ``OptimizeResult`` holding dicts instead of flat vectors."""

from __future__ import annotations

from typing import Any

from scipy.optimize import OptimizeResult

#: ``status`` of a run stopped by Ctrl-C (scipy uses small non-negative codes).
STATUS_INTERRUPTED = -2
#: ``status`` of a run whose objective raised; the exception carries the result.
STATUS_OBJECTIVE_RAISED = -3
#: ``status`` of a run that stopped because the objective (or its gradient, residuals or
#: Jacobian) was not finite beyond its best point: no finite progress was possible there.
STATUS_NOT_FINITE = -5


class MinimizeResult(OptimizeResult):  # type: ignore[misc]
    """The outcome of :func:`minimize` with ``full_output=True``.

    Attributes
    ----------
    x : OrderedDict
        The solution, with x0's keys, nesting, shapes, dtypes and device.
    fun : float
        Objective value at ``x``.
    jac : OrderedDict or None
        Gradient at ``x`` as a dict like ``x`` (None for derivative-free methods).
    success : bool
        Whether the optimizer exited successfully.
    status : int
        scipy's termination code; ``-2`` interrupted (Ctrl-C), ``-3`` the objective raised,
        ``-5`` the method failed after trial points where the loss or gradient was not finite
        (no finite progress was possible; ``x`` is the best finite point, and scipy's own
        code is in ``scipy_result.status``).
    message : str
        Description of the cause of termination.
    nit, nfev, njev, nhev : int
        Iterations and evaluations of the objective, gradient and Hessian (products).
    best_fun : float
        The lowest finite objective value seen during the run (equals ``fun`` unless the
        method ends at a worse point, e.g. after a non-finite trial).
    method : str
        The method that ran.
    scipy_result : OptimizeResult
        scipy's own result on the flat float64 vector (``x`` is a NumPy array there).
    """

    def __getattr__(self, name: str) -> Any:  # give a clear error rather than KeyError
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


class LeastSquaresResult(MinimizeResult):
    """The outcome of :func:`least_squares`, with ``scipy.optimize.least_squares``'s fields.

    Attributes
    ----------
    x : OrderedDict
        The solution, with x0's keys, nesting, shapes, dtypes and device.
    cost : float
        ``0.5 · Σ ρ(r²)`` at ``x`` (half the sum of squares for the linear loss).
    fun : tensor
        The residuals at ``x``, flattened (a 1-D tensor of the framework, on x0's device).
    grad : OrderedDict
        Gradient of the cost at ``x``, a dict like ``x``.
    optimality : float
        First-order optimality: ``‖grad‖∞``, or with bounds scipy's ``‖v·grad‖∞`` (Coleman-Li
        scaling).
    active_mask : OrderedDict or None
        With bounds, a dict like ``x`` of ints: -1 at a lower bound, 1 at an upper, else 0.
    nfev, njev : int
        Residual evaluations (trial points) and Jacobian evaluations.
    nit : int
        Accepted iterations.
    status : int
        ``0`` max_nfev (or ``options["max_iter"]``) reached, ``1`` gtol, ``2`` ftol, ``3`` xtol,
        ``4`` ftol and xtol, ``-2`` stopped by the callback (or Ctrl-C, see
        :class:`~dict_minimize.OptimizationInterrupted`), ``-3`` residual_fn raised, ``-4`` the
        damping reached its limit without reducing the cost, ``-5`` the same because the
        residuals or the Jacobian were not finite at the trial points (``x`` is the best
        finite point).
    success : bool
        ``status > 0``.
    message : str
        Description of the cause of termination.
    history : dict of list
        Per iteration (the start included): ``"cost"``, ``"damping"`` (μ) and ``"nfev"``.
        Empty for the scipy-delegating methods.
    method : str
        The method that ran.
    scipy_result : OptimizeResult or None
        scipy's own result for the ``"scipy-*"`` methods.
    """
